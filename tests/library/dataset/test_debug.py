"""--debug_dataset: prints each sample with token ids, writes previews, stops after `count`."""

from dataset_helpers import group_params, solid

from library.dataset.debug import run_debug_dataset
from library.dataset.group import build_dataset_group
from library.dataset.params import SubsetParams
from library.tokenizers import load_bundled_tokenizer
from library.tokens import add_new_tokens, make_caption_rewriter, new_token_names


def test_debug_dataset_prints_rewritten_captions_and_new_token_ids(image_dir, tmp_path):
    tokenizer = load_bundled_tokenizer("sd1")
    names = new_token_names("mychar4", 2)
    ids = add_new_tokens(tokenizer, names)
    for i in range(4):
        (image_dir / f"img{i}.txt").write_text(f"mychar4, tag{i}")
    params = group_params(SubsetParams(image_dir=str(image_dir), caption_extension=".txt", alpha_mask=True))
    group = build_dataset_group(params, caption_rewrite=make_caption_rewriter("mychar4", names))
    lines = []
    shown = run_debug_dataset(group, [tokenizer], tmp_path / "out", count=3, print_fn=lines.append)
    text = "\n".join(lines)
    assert shown == 3
    assert text.count('caption: "mychar4 mychar41, tag') == 3
    assert f"{ids[0]}, {ids[1]}" in text and ids[0] >= 49408
    pngs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len([p for p in pngs if not p.endswith("_mask.png")]) == 3 and len(pngs) == 6


def test_debug_dataset_all_samples(tmp_path):
    d = tmp_path / "imgs"
    for i in range(3):
        solid(d / f"{i}.png", (64, 64))
    group = build_dataset_group(group_params(SubsetParams(image_dir=str(d), class_tokens="sks", num_repeats=2)))
    lines = []
    assert run_debug_dataset(group, load_bundled_tokenizer("sd1"), tmp_path / "o", 0, lines.append) == 6
