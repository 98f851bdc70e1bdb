"""Specification of output file names, retention and metadata."""

import json
import time

from library.training import checkpoints as ck
from library.training.family import SDFamily


def test_names_follow_sd_scripts():
    assert ck.epoch_stem("mychar", 5) == "mychar-000005"
    assert ck.step_stem("mychar", 500) == "mychar-step00000500"
    assert ck.state_dir_name("mychar-step00000500") == "mychar-step00000500-state"


def test_save_last_n_epochs_keeps_the_last_n_saves(tmp_path):
    for epoch in (2, 4, 6, 8):
        (tmp_path / f"x-{epoch:06d}.safetensors").write_bytes(b"")
    old = ck.outdated_epoch_saves(tmp_path, "x", ".safetensors", current_epoch=8, every_n_epochs=2, keep_last_n=2)
    assert sorted(p.name for p in old) == ["x-000002.safetensors", "x-000004.safetensors"]


def test_save_last_n_steps_keeps_saves_within_the_window(tmp_path):
    for step in (100, 200, 300, 400):
        (tmp_path / f"x-step{step:08d}.pt").write_bytes(b"")
    (tmp_path / "x-other.pt").write_bytes(b"")
    old = ck.outdated_step_saves(tmp_path, "x", ".pt", current_step=400, keep_last_n_steps=200)
    assert [p.name for p in old] == ["x-step00000100.pt"]


def test_metadata_has_modelspec_and_training_record():
    meta = ck.build_metadata(
        architecture=SDFamily("sd2").modelspec_architecture(v_parameterization=True), v_parameterization=True, resolution=(768, 768), title=None, token_string="mychar4", num_vectors=4,
        step=10, epoch=1, base_model="model.safetensors", base_model_hash="ab" * 32, training_args={"learning_rate": "5e-3"},
    )
    assert meta["modelspec.architecture"] == "stable-diffusion-v2-768-v/textual-inversion"
    assert meta["modelspec.prediction_type"] == "v"
    assert meta["modelspec.resolution"] == "768x768"
    assert meta["ti_step"] == "10" and meta["ti_base_model_hash"] == "ab" * 32
    assert json.loads(meta["ti_training_args"]) == {"learning_rate": "5e-3"}
    assert all(isinstance(v, str) for v in meta.values())


def test_model_hasher_hashes_a_file_in_the_background(tmp_path):
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"abc")
    assert ck.ModelHasher(str(f)).result() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
