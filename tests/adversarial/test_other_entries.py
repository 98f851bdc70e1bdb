"""The same questions for the other entry points: the SDXL trainer, gen_img.py and tools/embedding.py."""

from __future__ import annotations

import pytest

import gen_img
import sdxl_train_textual_inversion
from tests.adversarial import bad_files as bad
from tests.adversarial.cases import _damaged_model, _weights
from tests.adversarial.harness import Case, assert_refused, run_in_process, run_process
from tests.helpers.tools import load_tool

_embedding_tool = load_tool("embedding")


def _gen(c, *extra):
    return ["--ckpt", str(c.model), "--outdir", str(c.tmp / "images_out"), "--prompt", "a toyxstar", "--steps", "2", "--W", "64", "--H", "64", *extra]


SDXL_CASES = [
    Case("sdxl trainer given an SD1 model", lambda c: c.argv(), ("train_textual_inversion.py",)),
    Case("sdxl ti_text_encoders x", lambda c: c.argv("--ti_text_encoders=x"), ("--ti_text_encoders",)),
    Case("sdxl num_vectors_per_token 100", lambda c: c.argv("--num_vectors_per_token=100"), ("--num_vectors_per_token", "75")),
    Case("sdxl cache_text_encoder_outputs", lambda c: c.argv("--cache_text_encoder_outputs"), ("--cache_text_encoder_outputs",)),
]
GEN_CASES = [
    Case("gen_img model missing", lambda c: ["--ckpt", str(c.tmp / "none.safetensors"), "--prompt", "x"], ("none.safetensors",)),
    Case("gen_img model unet cut in half", lambda c: _gen(c) + ["--ckpt", _damaged_model(c, "unet/diffusion_pytorch_model.safetensors", bad.cut_in_half)],
         ("cut short",)),
    Case("gen_img embedding malicious", lambda c: _gen(c, "--textual_inversion_embeddings", str(bad.malicious_pickle(c.tmp / "e.pt", c.tmp / bad.PWNED))),
         ("e.pt", "refused")),
    Case("gen_img embedding truncated", lambda c: _gen(c, "--textual_inversion_embeddings", str(bad.cut_in_half(bad.non_finite_embedding(c.tmp / "e.safetensors", 0.0)))),
         ("e.safetensors",)),
    Case("gen_img steps abc", lambda c: _gen(c, "--steps", "abc"), ("--steps",)),
    Case("gen_img unknown flag", lambda c: _gen(c, "--bogus"), ("--bogus",)),
]
TOOL_CASES = [
    Case("embedding inspect missing", lambda c: ["inspect", str(c.tmp / "none.pt")], ("none.pt",), multiline=True),
    Case("embedding inspect malicious", lambda c: ["inspect", str(bad.malicious_pickle(c.tmp / "e.pt", c.tmp / bad.PWNED))], ("e.pt", "refused"), multiline=True),
    Case("embedding convert truncated", lambda c: ["convert", str(bad.cut_in_half(bad.non_finite_embedding(c.tmp / "e.safetensors", 0.0))), "--to", "a1111-pt"],
         ("e.safetensors",)),
    Case("embedding convert unknown target", lambda c: ["convert", str(c.good), "--to", "bogus"], ("--to",)),
    Case("embedding convert over an existing file", lambda c: ["convert", _weights(c, 0.0), "--to", "safetensors", "--out", str(c.good)],
         (str("ti.safetensors"),)),
]


@pytest.mark.parametrize("entry, case", [pytest.param(e, c, id=c.id) for e, cs in (
    (sdxl_train_textual_inversion.main, SDXL_CASES), (gen_img.main, GEN_CASES), (_embedding_tool.main, TOOL_CASES)) for c in cs])
def test_bad_input_to_another_entry_is_refused_clearly(entry, case, ctx):
    outcome = run_in_process(entry, case.argv(ctx))
    assert_refused(outcome, *case.resolved_names(ctx), multiline=case.multiline)
    assert ctx.good_is_untouched()
    assert not (ctx.tmp / bad.PWNED).exists()


@pytest.mark.slow
@pytest.mark.parametrize("script, argv", [
    ("train_textual_inversion.py", ["--max_train_steps=abc"]),
    ("train_textual_inversion.py", ["--pretrained_model_name_or_path=/nonexistent/model.safetensors"]),
    ("gen_img.py", ["--ckpt", "/nonexistent/model.safetensors", "--prompt", "x"]),
    ("tools/embedding.py", ["inspect", "/nonexistent/e.pt"]),
])
def test_a_real_process_exits_non_zero_without_a_traceback(script, argv, ctx):
    if script == "train_textual_inversion.py":
        argv = ctx.argv(*argv)
    outcome = run_process(script, argv)
    assert outcome.code == 2 and "Traceback" not in outcome.stderr and "error:" in outcome.stderr, outcome.stderr[-2000:]
