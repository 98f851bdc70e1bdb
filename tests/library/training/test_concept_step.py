"""How a lockstep step groups the concepts' batches into forward passes (library.training.concept_step)."""

import torch

from library.training.concept_step import merge_batches


def _batch(concept: int, n: int, size: int = 8, cached: bool = True, masked: bool = False) -> dict:
    pixels = torch.full((n, 4, size, size), float(concept))
    return {
        "concept": concept,
        "latents": pixels if cached else None,
        "images": None if cached else torch.zeros(n, 3, size * 8, size * 8),
        "captions": [f"c{concept} {i}" for i in range(n)],
        "image_paths": [f"{concept}/{i}.png" for i in range(n)],
        "loss_weights": torch.ones(n),
        "alpha_masks": torch.ones(n, 1, size * 8, size * 8) if masked else None,
        "original_sizes_hw": torch.zeros(n, 2, dtype=torch.long),
        "crop_top_lefts": torch.zeros(n, 2, dtype=torch.long),
        "target_sizes_hw": torch.zeros(n, 2, dtype=torch.long),
        "flipped": torch.zeros(n, dtype=torch.bool),
    }


def test_batches_of_one_shape_share_one_forward_pass_in_concept_order():
    (merged, sizes, concepts), = merge_batches([_batch(0, 2), _batch(1, 3)])
    assert sizes == [2, 3] and concepts == [0, 1]
    assert merged["captions"] == ["c0 0", "c0 1", "c1 0", "c1 1", "c1 2"]
    assert merged["latents"].shape[0] == 5 and merged["latents"][2:].eq(1).all()
    assert merged["images"] is None and merged["alpha_masks"] is None


def test_other_resolutions_uncached_batches_and_masks_get_passes_of_their_own():
    batches = [_batch(0, 2, size=8), _batch(1, 2, size=12), _batch(2, 1, size=8), _batch(3, 2, cached=False), _batch(4, 1, masked=True)]
    passes = merge_batches(batches)
    assert [sizes for _, sizes, _ in passes] == [[2, 1], [2], [2], [1]]
    assert [c for _, _, concepts in passes for c in concepts] == [0, 2, 1, 3, 4]  # the order of the losses the passes return
