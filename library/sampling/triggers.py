"""Prompts that use none of the loaded embeddings: say so, naming the trigger words.

An embedding does nothing unless its trigger word is in the prompt. A file named `learned_embeds.safetensors`
has the trigger `learned_embeds`, not the `<mychar4>` the user trained; without this warning such a run
quietly draws the base model's images.
"""

from __future__ import annotations

import logging

from library.sampling.prompt_options import PromptSpec
from library.tokens import contains_token

logger = logging.getLogger(__name__)

MAX_LISTED = 5


def uses_a_trigger(text: str, triggers: dict[str, list[str]]) -> bool:
    """Whether `text` holds a trigger word, or one of its token names, as the prompt rewriting matches them."""
    return any(contains_token(text, word) for trigger, names in triggers.items() for word in {trigger, *names})


def prompts_without_triggers(specs: list[PromptSpec], triggers: dict[str, list[str]]) -> list[PromptSpec]:
    """The prompts whose text and negative text use no trigger (none when no embedding is loaded)."""
    if not triggers:
        return []
    return [spec for spec in specs if not uses_a_trigger(f"{spec.prompt}\n{spec.negative_prompt or ''}", triggers)]


def warn_prompts_without_triggers(specs: list[PromptSpec], triggers: dict[str, list[str]]) -> int:
    """Log one warning per prompt (the first few, then a count) that uses none of `triggers`; returns how many."""
    unused = prompts_without_triggers(specs, triggers)
    words = ", ".join(triggers)
    for spec in unused[:MAX_LISTED]:
        logger.warning("%s: the prompt uses none of the embeddings' trigger words (%s), so no embedding affects it: %.60s",
                       spec.source or "prompt", words, spec.prompt)
    if len(unused) > MAX_LISTED:
        logger.warning("%d more prompt(s) use none of the trigger words (%s)", len(unused) - MAX_LISTED, words)
    return len(unused)
