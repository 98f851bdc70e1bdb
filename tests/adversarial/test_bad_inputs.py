"""Every kind of bad flag, file, image, config, model and embedding: a clear one-line refusal, no traceback, and the
good embedding already in the output folder untouched. One row of cases.py per kind."""

from __future__ import annotations

import pytest

import train_textual_inversion
from tests.adversarial import bad_files
from tests.adversarial.cases import ALL_CASES
from tests.adversarial.harness import assert_accepted, assert_refused, run_in_process


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in ALL_CASES])
def test_bad_input_is_refused_clearly(case, ctx):
    outcome = run_in_process(train_textual_inversion.main, case.argv(ctx))
    if case.expect == "error":
        assert_refused(outcome, *case.resolved_names(ctx), multiline=case.multiline)
        assert ctx.good_is_untouched(), "the good embedding in the output folder changed"
    else:  # the documented acceptance: the run trains and, like sd-scripts, replaces NAME.safetensors at the end
        assert_accepted(outcome)
    assert not (ctx.tmp / bad_files.PWNED).exists(), "a malicious pickle ran code"


@pytest.mark.training
def test_vectors_plus_the_longest_caption_past_the_window_are_warned_about(ctx, caplog):
    """Issue 19: 100 vectors used to train 74 without a word; vectors that fit alone but not with a caption are warned."""
    import shutil

    from tests.adversarial.cases import _dataset, _toml_for

    images = ctx.tmp / "long_captions"
    shutil.copytree(ctx.images, images)
    for caption in images.glob("*.txt"):
        caption.write_text("toyxstar, " + ", ".join(["a red square"] * 20))  # about 80 tokens with the vectors
    data = _dataset(ctx, _toml_for(ctx, images=images))
    outcome = run_in_process(train_textual_inversion.main, ctx.argv(f"--dataset_config={data}", "--num_vectors_per_token=10", steps=1))
    assert_accepted(outcome)
    warning = next(r.getMessage() for r in caplog.records if "token window" in r.getMessage() or "-token window" in r.getMessage())
    assert "75-token window" in warning and "10 vectors" in warning
