"""Do the new token's vectors and the captions fit the text encoder's token window?

A caption holds 75 tokens (150 or 225 with --max_token_length) between its start and end tokens; whatever falls
past the window is cut. Vectors that cannot fit at all are refused with the flags (flag_rules._run_values);
captions that push some vectors or words past the window are warned about here, once the dataset is known.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def token_window(args) -> int:
    """Tokens a caption can hold (without its start/end tokens): 75, or --max_token_length (150, 225)."""
    return args.max_token_length or 75


def warn_if_captions_overflow(group, tokenizer, tokens, window: int) -> int:
    """Warn when a caption, with the token string rewritten to its N vectors, is longer than `window` tokens.

    Returns the longest caption's length in tokens (without start/end tokens).
    """
    rewrite = tokens.caption_rewriter()
    longest, longest_caption, too_long = 0, "", 0
    for caption in set(group.iter_captions()):
        length = len(tokenizer(rewrite(caption), add_special_tokens=False).input_ids)
        too_long += length > window
        if length > longest:
            longest, longest_caption = length, caption
    if too_long:
        logger.warning(
            "%d caption(s) are longer than the %d-token window once %r becomes its %d vectors (longest: %d tokens, %r); "
            "the tokens past the window are cut, and with them any vectors or words there. Shorten the captions, use "
            "fewer --num_vectors_per_token, or a longer --max_token_length",
            too_long, window, tokens.token_string, tokens.num_vectors, longest, longest_caption[:80],
        )
    return longest
