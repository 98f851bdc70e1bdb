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
