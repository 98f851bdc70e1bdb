"""A prompt that uses none of the loaded embeddings' trigger words is named in a warning."""

import logging

from library.sampling.prompt_options import PromptSpec
from library.sampling.triggers import prompts_without_triggers, warn_prompts_without_triggers

TRIGGERS = {"mychar4": ["mychar4", "mychar41"], "badhand": ["badhand"]}


def test_prompts_using_a_trigger_or_its_token_names_or_the_negative_are_fine():
    specs = [PromptSpec("a photo of mychar4"), PromptSpec("mychar41 in a hat"), PromptSpec("a cat", "badhand"),
             PromptSpec("a <mychar4> cat"), PromptSpec("mychar4s and mychar"), PromptSpec("learned_embeds")]
    # whole words only: "<mychar4>" holds the word, "mychar4s" does not
    assert [s.prompt for s in prompts_without_triggers(specs, TRIGGERS)] == ["mychar4s and mychar", "learned_embeds"]


def test_no_embeddings_no_warning():
    assert prompts_without_triggers([PromptSpec("a cat")], {}) == []


def test_the_warning_names_the_prompt_and_every_trigger(caplog):
    caplog.set_level(logging.WARNING)
    specs = [PromptSpec("a <mychar> cat", source="prompts.txt line 2")] + [PromptSpec(f"dog {i}") for i in range(6)]
    assert warn_prompts_without_triggers(specs, TRIGGERS) == 7
    assert "prompts.txt line 2: the prompt uses none of the embeddings' trigger words (mychar4, badhand)" in caplog.text
    assert "2 more prompt(s) use none of the trigger words" in caplog.text
