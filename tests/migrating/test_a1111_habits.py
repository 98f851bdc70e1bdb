"""AUTOMATIC1111's habits: a flat folder with .txt captions, [filewords], tag dropout, previews, PNG embeddings."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from library.dataset.arguments import default_dataset_args
from library.dataset.config import dataset_params_from_args
from library.embeddings.reader import read_embedding
from train_textual_inversion import main as train_main


def a1111_folder(root, n=3):
    """Images with .txt captions written without the token, as A1111's preprocessing writes them."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / f"{i:05d}-{i}.png")
        (root / f"{i:05d}-{i}.txt").write_text(f"a red hat, picture {i}, outdoors")
    return root


@pytest.mark.slow
def test_flat_folder_with_txt_captions_trains_with_train_data_dir_alone(tiny_model_dir, tmp_path, caplog):
    data = a1111_folder(tmp_path / "data")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        train_main([f"--pretrained_model_name_or_path={tiny_model_dir('sd1')}", f"--train_data_dir={data}", "--token_string=hatxtok",
                    "--resolution=64", "--max_train_steps=2", f"--output_dir={out}", "--output_name=hat", "--seed=1",
                    "--max_data_loader_n_workers=0", "--caption_tag_dropout_rate=0.1", "--keep_tokens=1",
                    "--sample_every_n_steps=2", "--save_embedding_png", "--sample_sampler=euler"])
    log = caplog.text
    assert "no .caption files, but 3 .txt caption file(s)" in log and "--caption_extension .txt" in log
    assert "'a photo of a [name], [filewords]'" in log  # captions without the token get A1111's filewords templates
    # a preview prompt from the training set, with the token, and it says which
    assert "no --sample_prompts: sample images use the training caption" in log and "hatxtok" in log
    assert list((out / "sample").glob("*.png"))
    # the embedding and its PNG twin carry bit-identical vectors
    safetensors, png = read_embedding(out / "hat.safetensors"), read_embedding(out / "hat.png")
    assert torch.equal(safetensors.vectors["emb_params"], png.vectors["emb_params"])
    assert png.token == "hat" or png.trigger == "hat"


def test_sd_scripts_folders_keep_caption_as_default_but_say_when_only_txt_exist(tmp_path, caplog):
    sub = a1111_folder(tmp_path / "train" / "10_hat")
    with caplog.at_level(logging.WARNING):
        (subset,) = dataset_params_from_args(default_dataset_args(train_data_dir=str(sub.parent), resolution=(64, 64))).datasets[0].subsets
    assert subset.caption_extension == ".caption"  # sd-scripts' behaviour is unchanged
    assert "3 .txt caption file(s)" in caplog.text and "NOT read" in caplog.text and "--caption_extension .txt" in caplog.text
