"""TI paper templates and A1111 template files."""

import random

import pytest

from library.dataset.templates import (
    OBJECT_TEMPLATES,
    STYLE_TEMPLATES,
    apply_templates,
    builtin_templates,
    fill_template,
    read_template_file,
)
from library.errors import UserError


def test_builtin_lists_are_the_papers():
    assert len(OBJECT_TEMPLATES) == 27 and len(STYLE_TEMPLATES) == 19
    assert OBJECT_TEMPLATES[0] == "a photo of a {}" and STYLE_TEMPLATES[0] == "a painting in the style of {}"
    assert all(t.count("{}") == 1 for t in OBJECT_TEMPLATES + STYLE_TEMPLATES)
    assert builtin_templates("style") == STYLE_TEMPLATES and builtin_templates("object") == OBJECT_TEMPLATES
    builtin_templates("object").clear()  # callers get a copy: the paper's list cannot be changed through it
    assert len(builtin_templates("object")) == 27
    with pytest.raises(ValueError):
        builtin_templates("portrait")


def test_fill_template_both_syntaxes():
    assert fill_template("a photo of a {}", "mytok", "ignored caption") == "a photo of a mytok"
    assert fill_template("[name], [filewords], art", "mytok", "red, hat") == "mytok, red, hat, art"
    assert fill_template("a [name] photo", "mytok", "x") == "a mytok photo"


def test_apply_templates_is_pinned_by_the_rng():
    a = apply_templates(OBJECT_TEMPLATES, "tok", "c", random.Random(4))
    assert a == apply_templates(OBJECT_TEMPLATES, "tok", "c", random.Random(4))
    assert len({apply_templates(OBJECT_TEMPLATES, "tok", "c", random.Random(s)) for s in range(50)}) > 10


def test_template_file(tmp_path):
    path = tmp_path / "style_filewords.txt"
    path.write_text("a painting of [filewords], art by [name]\n\n  a rendering of [filewords], art by [name]  \n")
    assert read_template_file(path) == [
        "a painting of [filewords], art by [name]",
        "a rendering of [filewords], art by [name]",
    ]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="no templates"):
        read_template_file(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="does not exist"):
        read_template_file(tmp_path / "nope.txt")


# AUTOMATIC1111 modules/textual_inversion/dataset.py (commit 3ea43ea96b10dc39cdb20f7f966766111ec9c24b):
# re_numbers_at_start = r"^[-\d]+\s*", applied to the file name without extension when there is no .txt caption
A1111_RE_NUMBERS_AT_START = r"^[-\d]+\s*"
A1111_FILEWORDS_EXAMPLES = {  # file name -> [filewords]
    "00012-a red car.png": "a red car",
    "12-3-4 girl, smile.jpg": "girl, smile",
    "2023 photo 7.webp": "photo 7",
    "photo 7.png": "photo 7",
    "-_x.png": "_x",
}


def test_filewords_without_a_caption_file_follow_a1111s_rule():
    from library.dataset.templates import A1111_LEADING_NUMBERS, filewords_from_file_name

    assert A1111_LEADING_NUMBERS.pattern == A1111_RE_NUMBERS_AT_START
    for name, words in A1111_FILEWORDS_EXAMPLES.items():
        assert filewords_from_file_name(f"/data/{name}") == words, name


def test_filewords_in_a_template_file_use_the_rule_for_images_without_captions(tmp_path):
    from library.dataset.group import build_dataset_group
    from tests.library.dataset.dataset_helpers import group_params, solid
    from library.dataset.params import SubsetParams

    solid(tmp_path / "0007-red hat.png", (64, 64))
    solid(tmp_path / "0008-blue hat.png", (64, 64))
    (tmp_path / "0008-blue hat.txt").write_text("a captioned hat")
    params = group_params(SubsetParams(image_dir=str(tmp_path), caption_extension=".txt"), resolution=(64, 64))
    group = build_dataset_group(params, templates=["[name] with [filewords]"], token_string="tok")
    assert sorted(group.iter_captions()) == ["tok with a captioned hat", "tok with red hat"]
