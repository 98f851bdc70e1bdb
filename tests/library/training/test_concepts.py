"""Which concepts a run trains (issue 17), read from the dataset config's subsets; clashes refused before loading."""

from __future__ import annotations

import argparse

import pytest

from library.dataset.config import build_dataset_group
from library.errors import UserError
from library.training.concepts import concept_learning_rate, resolve_concepts


def _args(**kw) -> argparse.Namespace:
    base = dict(token_string="mychar4", init_word="girl", num_vectors_per_token=2, output_name="ti", resolution="64")
    return argparse.Namespace(**{**base, **kw})


def _params(*subsets: dict, general: dict | None = None):
    config = {"datasets": [{"subsets": [{"image_dir": f"/d{i}", **s} for i, s in enumerate(subsets)]}]}
    if general:
        config["general"] = general
    return build_dataset_group(config, _args(), source="t.toml")


def test_a_config_without_concept_keys_trains_the_command_line_concept():
    params = _params({}, {"num_repeats": 3})
    [concept] = resolve_concepts(params, _args())
    assert (concept.token_string, concept.init_word, concept.num_vectors, concept.subsets) == (
        "mychar4", "girl", 2, ["datasets[0].subsets[0]", "datasets[0].subsets[1]"])
    assert concept.file_stem(True, "ti") == "ti"


def test_subsets_name_their_concepts_and_inherit_the_rest():
    params = _params({}, {"token_string": "otherx9", "output_name": "other"}, {"token_string": "otherx9", "output_name": "other"},
                     general={"init_word": "cat"})
    first, second = resolve_concepts(params, _args())
    assert (first.token_string, first.init_word, first.file_stem(False, "ti")) == ("mychar4", "cat", "ti")
    assert (second.token_string, second.num_vectors, second.file_stem(False, "ti")) == ("otherx9", 2, "other")
    assert second.subsets == ["datasets[0].subsets[1]", "datasets[0].subsets[2]"]
    assert [s.concept for s in params.datasets[0].subsets] == [0, 1, 1]


def test_every_subset_may_name_its_concept_without_a_command_line_token():
    params = _params({"token_string": "aaax1"}, {"token_string": "bbbx1"})
    concepts = resolve_concepts(params, _args(token_string=None))
    assert [c.token_string for c in concepts] == ["aaax1", "bbbx1"]
    assert [c.file_stem(False, None) for c in concepts] == ["aaax1", "bbbx1"]


def test_the_same_token_string_with_different_settings_is_refused_naming_both_subsets():
    params = _params({"token_string": "aaax1", "init_word": "cat"}, {"token_string": "aaax1", "init_word": "dog"})
    with pytest.raises(UserError, match=r"datasets\[0\]\.subsets\[1\] and datasets\[0\]\.subsets\[0\] both train the token string 'aaax1'"):
        resolve_concepts(params, _args())


def test_token_names_shared_by_two_concepts_are_refused():
    # 'mychar4' with 2 vectors also names 'mychar41'
    params = _params({}, {"token_string": "mychar41"})
    with pytest.raises(UserError, match=r"'mychar4' \(datasets\[0\]\.subsets\[0\]\) and 'mychar41' \(datasets\[0\]\.subsets\[1\]\) both need the token 'mychar41'"):
        resolve_concepts(params, _args())


def test_two_concepts_writing_the_same_file_are_refused():
    params = _params({}, {"token_string": "bbbx1", "output_name": "ti"})
    with pytest.raises(UserError, match="would both be saved as 'ti'"):
        resolve_concepts(params, _args())


def test_weights_and_diffusers_outputs_need_one_concept():
    params = _params({}, {"token_string": "bbbx1"})
    with pytest.raises(UserError, match="--weights works with one concept"):
        resolve_concepts(params, _args(weights="x.safetensors"))


def test_bad_concept_values_are_dataset_config_errors():
    from library.dataset.config_schema import DatasetConfigError

    with pytest.raises(DatasetConfigError) as err:
        _params({"token_string": "two words", "num_vectors_per_token": 0, "learning_rate": -1})
    text = str(err.value)
    assert "token_string must be one word" in text and "num_vectors_per_token must be 1 or more" in text
    assert "learning_rate must be above 0" in text


def test_a_concept_learning_rate_is_scaled_like_the_command_line_rate():
    params = _params({"token_string": "aaax1", "learning_rate": 0.01}, {})
    concept, cli = resolve_concepts(params, _args())
    assert concept_learning_rate(concept, base=0.004, cli_rate=0.002) == pytest.approx(0.02)  # --scale_lr doubled it
    assert concept_learning_rate(cli, base=0.004, cli_rate=0.002) == 0.004


def test_the_example_config_trains_three_concepts():
    from pathlib import Path

    from library.dataset.config import load_dataset_config

    example = Path(__file__).resolve().parents[3] / "configs" / "dataset_concepts_example.toml"
    concepts = resolve_concepts(load_dataset_config(example, _args()), _args(output_name="mychar"))
    assert [(c.token_string, c.num_vectors, c.file_stem(False, "mychar")) for c in concepts] == [
        ("mychar4", 2, "mychar"), ("myhat7", 2, "myhat7"), ("mystyle3", 4, "mystyle3")]
    assert concepts[1].learning_rate == 0.003 and concepts[2].init_word == "painting"


def test_a_concept_file_name_stays_inside_the_output_folder():
    from library.dataset.config_schema import DatasetConfigError

    with pytest.raises(DatasetConfigError, match=r"output_name '\.\./x' must be a plain file name"):
        _params({"token_string": "aaax1", "output_name": "../x"})
    with pytest.raises(UserError, match=r"would be saved as 'a/b', which is not a plain file name"):
        resolve_concepts(_params({}, {"token_string": "a/b"}), _args())
