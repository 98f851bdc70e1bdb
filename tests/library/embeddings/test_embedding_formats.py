"""Specification of layout recognition: which keys mean which layout, and what is refused and why."""

import logging

import pytest
import torch

from library.embeddings.formats import (
    A1111,
    DIFFUSERS,
    EMB_PARAMS,
    LDM,
    ONETRAINER,
    SDXL,
    XL_INVERSION,
    EmbeddingFile,
    recognize,
)
from library.errors import UserError

from embedding_files import a1111_dict


def test_a1111_dict(vectors):
    found = recognize(a1111_dict(vectors, name="badhandv3", step=15001), "f.pt")
    assert found.layout == A1111 and found.token == "badhandv3" and found.step == 15001
    assert torch.equal(found.vectors["emb_params"], vectors)
    assert found.extras == {"sd_checkpoint": "5d2f8777af", "sd_checkpoint_name": "v1-5-pruned"}


def test_ldm_parameter_dict_with_tensor_token_and_no_name(vectors):
    data = {"string_to_token": {"*": torch.tensor(265)}, "string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors)})}
    found = recognize(data, "embeddings.pt")
    assert found.layout == LDM and found.token is None
    assert torch.equal(found.vectors["emb_params"], vectors) and not isinstance(found.vectors["emb_params"], torch.nn.Parameter)


@pytest.mark.parametrize(
    "key, layout",
    [("emb_params", EMB_PARAMS), ("emp_params", ONETRAINER)],
)
def test_single_key_layouts(key, layout, vectors):
    found = recognize({key: vectors}, "f")
    assert found.layout == layout and torch.equal(found.vectors["emb_params"], vectors)


def test_onetrainer_output_embedding_is_ignored_beside_the_input_one(vectors):
    found = recognize({"emp_params": vectors, "emp_params_out": vectors * 2}, "f")
    assert torch.equal(found.vectors["emb_params"], vectors)
    assert "emp_params_out" in found.warnings[0]


def test_onetrainer_output_embedding_alone_is_refused(vectors):
    with pytest.raises(UserError, match="emp_params_out.*not a token embedding"):
        recognize({"emp_params_out": vectors}, "f")


@pytest.mark.parametrize("shape", [(768,), (1, 768), (4, 768)])
def test_diffusers_token_key_1d_or_2d(shape):
    found = recognize({"<Le Petit Prince-moon >": torch.ones(shape)}, "learned_embeds.bin")
    assert found.layout == DIFFUSERS and found.token == "<Le Petit Prince-moon >"
    assert found.vectors["emb_params"].shape == (shape[0] if len(shape) == 2 else 1, 768)


def test_sdxl_clip_l_and_clip_g():
    found = recognize({"clip_g": torch.ones(2, 1280), "clip_l": torch.ones(2, 768)}, "f")
    assert found.layout == SDXL and list(found.vectors) == ["clip_l", "clip_g"]


def test_xl_inversion_notebook_layout_is_read_as_sdxl_with_a_note():
    found = recognize({"emb": torch.ones(768, dtype=torch.bfloat16), "emb2": torch.ones(1280, dtype=torch.bfloat16)}, "f")
    assert found.layout == XL_INVERSION and found.vectors["clip_g"].shape == (1, 1280)
    assert found.vectors["clip_l"].dtype == torch.bfloat16 and "trigger word" in found.warnings[0]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"t5xxl": torch.ones(88, 4096)}, r"another model family.*'t5xxl' float32\[88, 4096\]"),
        ({"clip_l": torch.ones(1, 768), "t5": torch.ones(1, 4096)}, "another model family.*'t5'"),
        ({"clip_l": torch.ones(1, 768)}, "no clip_g"),
        ({"clip_l": torch.ones(2, 768), "clip_g": torch.ones(3, 1280)}, "vector counts differ"),
        ({"a": torch.ones(768), "b": torch.ones(768)}, r"not a known embedding layout \(keys: 'a' float32\[768\], 'b'"),
        ({"string_to_param": {"*": torch.ones(1, 8), "x": torch.ones(1, 8)}}, "holds 2 terms"),
        ({"emb_params": torch.ones(2, 3, 4)}, "N x dim"),
        ({"emb_params": torch.ones(0, 768)}, "no vectors"),
        ({"emb_params": torch.ones(2, 8, dtype=torch.int64)}, "not floating-point"),
        ({"emb_params": "oops"}, "not a tensor"),
        ({}, "empty"),
        ([torch.ones(3)], "holds a list"),
    ],
)
def test_refusals_say_why(data, message):
    with pytest.raises(UserError, match=message):
        recognize(data, "some.pt")


def _file(**vectors) -> EmbeddingFile:
    from pathlib import Path

    return EmbeddingFile(path=Path("x/badhandv4.pt"), vectors=vectors, layout=A1111, container="torch-pickle")


def test_trigger_word_is_the_file_stem():
    assert _file(emb_params=torch.ones(1, 768)).trigger == "badhandv4"


def test_family_fit_by_width():
    assert _file(emb_params=torch.ones(1, 768)).fitting_families() == ["sd1"]
    assert _file(emb_params=torch.ones(1, 1024)).fitting_families() == ["sd2"]
    assert _file(clip_l=torch.ones(1, 768), clip_g=torch.ones(1, 1280)).fitting_families() == ["sdxl"]
    assert _file(emb_params=torch.ones(1, 32)).fitting_families() == []


def test_vectors_for_matching_slots():
    emb = _file(clip_l=torch.ones(2, 32), clip_g=torch.ones(2, 64))
    out = emb.vectors_for_slots(("clip_l", "clip_g"), {"clip_l": 32, "clip_g": 64})
    assert out["clip_g"].shape == (2, 64)


def test_single_encoder_file_on_sdxl_goes_to_clip_l_with_zero_clip_g_and_a_warning(caplog):
    emb = _file(emb_params=torch.ones(2, 32))
    with caplog.at_level(logging.WARNING):
        out = emb.vectors_for_slots(("clip_l", "clip_g"), {"clip_l": 32, "clip_g": 64})
    assert torch.equal(out["clip_l"], torch.ones(2, 32)) and torch.equal(out["clip_g"], torch.zeros(2, 64))
    assert "CLIP-L only" in caplog.text


@pytest.mark.parametrize(
    "vectors, slots, dims, message",
    [
        ({"emb_params": torch.ones(1, 768)}, ("emb_params",), {"emb_params": 1024}, r"768 wide but the model's text encoder is 1024.*SD 1.x"),
        ({"emb_params": torch.ones(1, 1024)}, ("clip_l", "clip_g"), {"clip_l": 768, "clip_g": 1280}, r"1024 wide.*clip_l 768 \+ clip_g 1280.*SD 2.x"),
        ({"clip_l": torch.ones(1, 768), "clip_g": torch.ones(1, 1280)}, ("emb_params",), {"emb_params": 768}, r"clip_l 768 \+ clip_g 1280 wide.*is 768.*SDXL"),
    ],
)
def test_width_mismatch_names_file_and_both_widths(vectors, slots, dims, message):
    with pytest.raises(UserError, match=r"badhandv4\.pt: .*" + message):
        _file(**vectors).vectors_for_slots(slots, dims)
