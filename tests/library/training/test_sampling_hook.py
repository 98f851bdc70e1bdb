"""The trainer's sample prompts: a prompt without the trained token is named in a warning at start."""

import argparse
import logging
from types import SimpleNamespace

from library.training.sampling_hook import Sampler


def test_sample_prompts_without_the_token_are_warned_about(tmp_path, caplog):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of mychar4 --d 1\na photo of <mychar4> --d 2\na photo of a cat --d 3\n", encoding="utf-8")
    args = argparse.Namespace(sample_prompts=str(prompts))
    tokens = SimpleNamespace(token_string="mychar4", names=["mychar4", "mychar41"])
    caplog.set_level(logging.WARNING)
    sampler = Sampler(args, models=None, tokens=tokens, accelerator=SimpleNamespace(is_main_process=True))
    assert len(sampler.specs) == 3
    assert f"{prompts} line 3: the prompt uses none of the embeddings' trigger words (mychar4)" in caplog.text
    assert "line 1" not in caplog.text and "line 2" not in caplog.text
