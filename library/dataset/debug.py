"""--debug_dataset: show what training would see, without training and without a window.

For each sample: the image path, bucket, SDXL size/crop conditioning, the final caption (token rewrite applied)
and its token ids per tokenizer (new tokens show as ids 49408 and up); a preview PNG per sample in `out_dir`.
With several concepts (issue 17) each sample also names the concept its caption trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from library.dataset.images import to_pil


def run_debug_dataset(
    group,
    tokenizers: Sequence,
    out_dir: str | Path,
    count: int = 0,
    print_fn: Callable[[str], None] = print,
) -> int:
    """Print and preview `count` samples of the current epoch (0 = all); returns how many were shown."""
    if not isinstance(tokenizers, (list, tuple)):
        tokenizers = [tokenizers]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for line in group.summary_lines():
        print_fn(line)
    print_fn(f"epoch {group.epoch}: {len(group)} batches; previews in {out_dir}")

    shown = 0
    for index in range(len(group)):
        batch = group[index]
        concept_tokens = getattr(group, "concept_tokens", None)
        trains = f", trains the concept {concept_tokens[batch['concept']]!r}" if concept_tokens and "concept" in batch else ""
        for j, path in enumerate(batch["image_paths"]):
            th, tw = batch["target_sizes_hw"][j].tolist()
            oh, ow = batch["original_sizes_hw"][j].tolist()
            top, left = batch["crop_top_lefts"][j].tolist()
            caption = batch["captions"][j]
            print_fn(f"[{shown}] batch {index}, item {j}: {path}{trains}")
            print_fn(
                f"    bucket {tw}x{th}, original {ow}x{oh}, crop top/left {top},{left}, "
                f"flipped {bool(batch['flipped'][j])}, loss weight {float(batch['loss_weights'][j]):g}"
            )
            print_fn(f'    caption: "{caption}"')
            for t, tokenizer in enumerate(tokenizers):
                ids = tokenizer(caption, truncation=False, add_special_tokens=True).input_ids
                limit = getattr(tokenizer, "model_max_length", 77)
                note = f"  ({len(ids)} > {limit}: truncated in training)" if len(ids) > limit else ""
                print_fn(f"    token ids{'' if len(tokenizers) == 1 else f' ({t + 1})'}: {ids}{note}")
            stem = f"{shown:04d}_{Path(path).stem}"
            if batch["images"] is not None:
                to_pil(batch["images"][j]).save(out_dir / f"{stem}.png")
                if batch["alpha_masks"] is not None:
                    mask = (batch["alpha_masks"][j, 0] * 255).round().byte().numpy()
                    Image.fromarray(mask, "L").save(out_dir / f"{stem}_mask.png")
            else:
                print_fn("    (latents are cached: no preview image)")
            shown += 1
            if count and shown >= count:
                return shown
    return shown
