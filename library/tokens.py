"""New-token naming, registration in a tokenizer, and the caption rewrite.

A token string trained with N vectors becomes N tokens named as sd-scripts names them:
`mychar4`, `mychar41`, `mychar42`, `mychar43`. In captions and prompts the token string is replaced, as a
whole word and with its exact case, by those N tokens, so that each caption feeds all N vectors to the text
encoder. One rewrite (`make_token_rewriter`) serves training captions, sample prompts and gen_img prompts.

Matching is whole-word and case-sensitive, as documented and as sd-scripts behaves. The tokenizer must agree:
transformers 5 adds tokens that match inside words (`mychar4s` -> `mychar4` + `s`) and after lowercasing
(`MYCHAR4` -> `mychar4`), so the new tokens are added as `AddedToken(single_word=True, normalized=False)`:
a variant the rewrite leaves alone is then ordinary text to the tokenizer too, not a silent first vector.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable

from transformers import AddedToken, CLIPTokenizer

from library.errors import UserError


def new_token_names(token_string: str, num_vectors: int) -> list[str]:
    """`token_string` followed by `token_string1 … token_string{N-1}`."""
    assert num_vectors >= 1, f"num_vectors must be at least 1 (flag_rules refuses --num_vectors_per_token < 1), got {num_vectors}"
    return [token_string] + [f"{token_string}{i}" for i in range(1, num_vectors)]


def add_new_tokens(tokenizer: CLIPTokenizer, names: list[str], flag: str = "--token_string") -> list[int]:
    """Add `names` to the tokenizer and return their ids (49408 and up for CLIP).

    Refuses a name that the vocabulary already has, since training it would change an existing word.
    """
    existing = [n for n in names if _is_known_token(tokenizer, n)]
    if existing:
        raise UserError(
            f"{flag}: the token(s) {', '.join(existing)} already exist in the tokenizer's vocabulary; "
            "choose a token string that is not a real word, e.g. a made-up word with a digit such as 'mychar4'"
        )
    # whole word (single_word) and exact case (normalized=False: matched before the tokenizer lowercases)
    added = tokenizer.add_tokens([AddedToken(name, single_word=True, normalized=False) for name in names])
    if added != len(names):
        raise UserError(f"{flag}: could not add all of {names} to the tokenizer (added {added})")
    return tokenizer.convert_tokens_to_ids(names)


def _is_known_token(tokenizer: CLIPTokenizer, name: str) -> bool:
    # A name is "known" if it is an added token or a single whole-word BPE token (e.g. "cat" -> "cat</w>").
    if name in tokenizer.get_added_vocab():
        return True
    ids = tokenizer(name, add_special_tokens=False).input_ids
    return len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]).removesuffix("</w>") == name.lower()


def token_pattern(token_string: str) -> re.Pattern:
    """Matches `token_string` as a whole word, case-sensitively: `cat` matches in "a cat," but not in "catalog" or "Cat"."""
    return re.compile(r"(?<!\w)" + re.escape(token_string) + r"(?!\w)")


def make_token_rewriter(mapping: dict[str, list[str]]) -> Callable[[str], str]:
    """A function that replaces each whole-word, exact-case token string by all its N token names, in one pass.

    `mapping` is token string -> its names (`new_token_names`). sd-scripts' docs also let a prompt spell the
    names out (`mychar4 mychar41 mychar42 mychar43`): a token string already followed by its next names, in
    order, is replaced together with them, so each vector appears once. Longer token strings are tried first
    (`bad-hands-5` wins over `bad`), and a replacement is never rewritten again.
    """
    if not mapping:
        return lambda text: text
    alternatives, replacements = [], {}
    for i, token_string in enumerate(sorted(mapping, key=len, reverse=True)):
        names = mapping[token_string]
        spelled_out = ""
        for name in reversed(names[1:]):  # t(?:\s+n1(?:\s+n2)?)? : any in-order prefix of the other names
            spelled_out = r"(?:\s+" + re.escape(name) + r"(?!\w)" + spelled_out + r")?"
        alternatives.append(f"(?P<t{i}>{re.escape(token_string)}(?!\\w){spelled_out})")
        replacements[f"t{i}"] = " ".join(names)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")")
    return lambda text: pattern.sub(lambda m: replacements[m.lastgroup], text)


def make_caption_rewriter(token_string: str, names: list[str]) -> Callable[[str], str]:
    """The rewrite of one training token string (see make_token_rewriter)."""
    return make_token_rewriter({token_string: names})


def contains_token(caption: str, token_string: str) -> bool:
    """True if `token_string` occurs in `caption` as a whole word with its exact case."""
    return token_pattern(token_string).search(caption) is not None


def near_misses(captions: Iterable[str], token_string: str) -> Counter:
    """Words that contain the token string in another case or inside a longer word (`MYCHAR4`, `mychar4s`).

    Such words are not the token (matching is whole-word and case-sensitive), so their images do not train it.
    The token's own names (`mychar41`, `mychar42`, ...: the token string and digits) are not near-misses.
    Returns word -> number of occurrences.
    """
    variant = re.compile(r"\w*" + re.escape(token_string) + r"\w*", re.IGNORECASE)
    own_name = re.compile(re.escape(token_string) + r"\d*")
    found: Counter = Counter()
    for caption in captions:
        for match in variant.finditer(caption):
            if not own_name.fullmatch(match.group(0)):
                found[match.group(0)] += 1
    return found
