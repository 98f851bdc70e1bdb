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
