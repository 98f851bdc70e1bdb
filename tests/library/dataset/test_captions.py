"""Caption files and caption processing (sd-scripts semantics, pinned with a fixed RNG)."""

import random

import pytest

from library.dataset.captions import (
    CaptionOptions,
    caption_file_candidates,
    caption_from_text,
    fallback_caption,
    process_caption,
    read_text_file,
    warmup_tag_count,
)
from library.dataset.params import SubsetParams


def run(caption, seed=0, **opts):
    return process_caption(caption, CaptionOptions(**opts), random.Random(seed))


def test_no_options_keeps_the_first_line():
    assert run("a, b, c\nsecond line") == "a, b, c"


def test_prefix_and_suffix_are_joined_with_a_space():
    assert run("a, b", caption_prefix="sks,", caption_suffix=", end") == "sks, a, b , end"


def test_shuffle_is_a_permutation_pinned_by_the_rng():
    out = run("a, b, c, d, e", seed=3, shuffle_caption=True)
    assert sorted(out.split(", ")) == ["a", "b", "c", "d", "e"]
    assert out == run("a, b, c, d, e", seed=3, shuffle_caption=True)
    outs = {run("a, b, c, d, e", seed=s, shuffle_caption=True) for s in range(20)}
    assert len(outs) > 5


def test_keep_tokens_fixes_the_first_tags():
    for seed in range(10):
        out = run("sks, girl, a, b, c, d", seed=seed, shuffle_caption=True, keep_tokens=2)
        assert out.startswith("sks, girl, ")
        assert sorted(out.split(", ")[2:]) == ["a", "b", "c", "d"]


def test_keep_tokens_separator_fixed_prefix_shuffled_middle_fixed_suffix():
    caption = "1girl, miku ||| a, b, c, d ||| masterpiece, best"
    for seed in range(10):
        out = run(caption, seed=seed, shuffle_caption=True, keep_tokens_separator="|||")
        tags = out.split(", ")
        assert tags[:2] == ["1girl", "miku"]
        assert tags[-2:] == ["masterpiece", "best"]
        assert sorted(tags[2:-2]) == ["a", "b", "c", "d"]


def test_keep_tokens_separator_never_reaches_the_caption_even_without_shuffle():
    assert run("sks ||| a, b", keep_tokens_separator="|||") == "sks, a, b"


def test_sd_scripts_doc_example_prefix_and_suffix_with_separator():
    # docs example: prefix ends with |||, suffix holds the second |||
    out = run(
        "smile, red eyes",
        seed=1,
        shuffle_caption=True,
        keep_tokens_separator="|||",
        caption_prefix="1girl, hatsune miku, vocaloid |||",
        caption_suffix=", anime screencap ||| masterpiece, rating: general",
    )
    tags = out.split(", ")
    assert tags[:3] == ["1girl", "hatsune miku", "vocaloid"]
    assert tags[-2:] == ["masterpiece", "rating: general"]
    assert sorted(tags[3:-2]) == ["anime screencap", "red eyes", "smile"]


def test_secondary_separator_groups_tags_through_the_shuffle():
    for seed in range(10):
        out = run("a;;;b, c, d", seed=seed, shuffle_caption=True, secondary_separator=";;;")
        parts = out.split(", ")
        assert len(parts) == 3  # "a;;;b" moved as one tag, then became "a,b"
        assert "a,b" in parts


def test_custom_caption_separator():
    out = run("a. b. c", seed=0, shuffle_caption=True, caption_separator=".")
    assert sorted(out.split(", ")) == ["a", "b", "c"]


def test_wildcards_pick_one_option_and_keep_escaped_braces():
    seen = {run("a {red|green|blue} ball {{x}}", seed=s, enable_wildcard=True) for s in range(30)}
    assert seen == {"a red ball {x}", "a green ball {x}", "a blue ball {x}"}


def test_wildcard_multiline_caption_picks_one_line():
    seen = {run("line one\nline two", seed=s, enable_wildcard=True) for s in range(30)}
    assert seen == {"line one", "line two"}


def test_token_warmup_grows_the_number_of_tags_with_the_step():
    opts = CaptionOptions(token_warmup_min=1, token_warmup_step=10)
    caption = "a, b, c, d, e"
    counts = [len(process_caption(caption, opts, random.Random(0), step=s).split(", ")) for s in (0, 5, 9, 10, 50)]
    assert counts == [1, 3, 4, 5, 5]
    assert process_caption(caption, opts, random.Random(0), step=0) == "a"  # the first tags, in order


def test_fractional_token_warmup_uses_max_train_steps():
    opts = CaptionOptions(token_warmup_min=2, token_warmup_step=0.5)
    out = process_caption("a, b, c, d, e, f", opts, random.Random(0), step=0, max_train_steps=100)
    assert out == "a, b"
    assert warmup_tag_count(6, 25, 2, 50) == 4


def test_tag_dropout_and_caption_dropout():
    out = run("sks, a, b, c, d, e, f, g", seed=2, keep_tokens=1, caption_tag_dropout_rate=0.5)
    tags = out.split(", ")
    assert tags[0] == "sks" and 1 <= len(tags) < 8
    assert run("a, b", caption_dropout_rate=1.0) == ""
    assert process_caption("a", CaptionOptions(caption_dropout_every_n_epochs=2), random.Random(0), epoch=4) == ""
    assert process_caption("a", CaptionOptions(caption_dropout_every_n_epochs=2), random.Random(0), epoch=3) == "a"


def test_options_from_subset_params():
    subset = SubsetParams(image_dir="x", shuffle_caption=True, keep_tokens=2, caption_prefix="", secondary_separator="")
    opts = CaptionOptions.from_subset(subset)
    assert opts.shuffle_caption and opts.keep_tokens == 2
    assert opts.caption_prefix is None and opts.secondary_separator is None
    assert opts.caption_tag_dropout_rate == 0.0


def test_caption_file_encodings(tmp_path, caplog):
    (tmp_path / "u.txt").write_bytes("café, naïve".encode("utf-8"))
    (tmp_path / "bom.txt").write_bytes("\ufeffsks, girl".encode("utf-8"))
    (tmp_path / "cp.txt").write_bytes("caf\xe9, \x93quoted\x94".encode("latin-1"))
    assert read_text_file(tmp_path / "u.txt") == "café, naïve"
    assert read_text_file(tmp_path / "bom.txt") == "sks, girl"
    assert read_text_file(tmp_path / "cp.txt") == "café, \u201cquoted\u201d"
    assert "not UTF-8" in caplog.text


def test_caption_from_text():
    assert caption_from_text("first\nsecond\n", enable_wildcard=False) == "first"
    assert caption_from_text("\n  first \nsecond", enable_wildcard=False) == "first"
    assert caption_from_text("first\n\n  second  \n", enable_wildcard=True) == "first\nsecond"
    assert caption_from_text("", enable_wildcard=False) is None
    assert caption_from_text("\n\n", enable_wildcard=True) is None


def test_caption_file_candidates_and_fallback(tmp_path):
    names = [p.name for p in caption_file_candidates(tmp_path / "photo_0100_0200_0050_0060.png", "txt")]
    assert names == ["photo_0100_0200_0050_0060.txt", "photo.txt"]
    assert [p.name for p in caption_file_candidates(tmp_path / "a.b.jpg", ".caption")] == ["a.b.caption"]
    assert fallback_caption("/x/my_cat.png", "sks cat") == "sks cat"
    assert fallback_caption("/x/my_cat.png", None) == "my_cat"


@pytest.mark.parametrize("seed", [0, 1])
def test_processing_is_a_pure_function_of_the_rng(seed):
    opts = CaptionOptions(shuffle_caption=True, enable_wildcard=True, caption_tag_dropout_rate=0.2)
    caption = "{a|b}, c, d, e, f"
    first = process_caption(caption, opts, random.Random(seed))
    random.seed(12345)  # the global RNG plays no part
    assert process_caption(caption, opts, random.Random(seed)) == first
    # and the given RNG does: other seeds give other captions
    assert len({process_caption(caption, opts, random.Random(other)) for other in range(10)}) > 1


def test_tag_dropout_never_drops_the_trained_token_or_the_keep_tokens_prefix():
    opts = CaptionOptions(keep_tokens=1, caption_tag_dropout_rate=0.9, protected_token="mychar4")
    outs = [process_caption("1girl, red hair, mychar4, smile, hat, sky", opts, random.Random(seed)) for seed in range(50)]
    assert all(out.startswith("1girl") and "mychar4" in out for out in outs)
    assert any("smile" not in out for out in outs)  # the others are dropped at that rate
    unprotected = CaptionOptions(keep_tokens=1, caption_tag_dropout_rate=0.9)
    assert any("mychar4" not in process_caption("1girl, red hair, mychar4, smile", unprotected, random.Random(s)) for s in range(50))


def test_tag_dropout_draws_are_the_same_with_or_without_protection():
    caption = "a, tok, b, c, d, e"
    protected = CaptionOptions(caption_tag_dropout_rate=0.5, protected_token="tok")
    plain = CaptionOptions(caption_tag_dropout_rate=0.5)
    for seed in range(20):
        kept = process_caption(caption, protected, random.Random(seed)).split(", ")
        other = [t for t in process_caption(caption, plain, random.Random(seed)).split(", ") if t]
        assert [t for t in kept if t != "tok"] == [t for t in other if t != "tok"]
