"""End-to-end specification of train_textual_inversion.py on tiny real SD 1.x and SD 2.x (v-prediction) models."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_textual_inversion
from library.cli import run_main
from library.embeddings import read_embedding, save_embedding
from library.models.loading import load_models
from library.toyworld.world import HELD_OUT, caption, make_dataset
from library.training import loop
from library.training.config_file import parse_args_with_config
from library.training.loop import train
from library.training.parser import run_training
from library.training.trainable_tokens import TrainableTokens
from tests.helpers.a1111 import a1111_refusal
from tests.helpers.training import TOKEN, make_ti_dataset, train_argv

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.training  # every test here runs the trainer; `make test-fast` leaves them out



@pytest.fixture(scope="module")
def sd1_dataset(tmp_path_factory):
    return make_ti_dataset(tmp_path_factory.mktemp("sd1_data"))


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_training_changes_only_the_new_vectors_and_saves_them(family, tiny_model_dir, tmp_path, sd1_dataset):
    model = tiny_model_dir(family)
    extra = ["--v_parameterization"] if family == "sd2" else []
    result = run_training(train_argv(model, sd1_dataset, tmp_path, "--cache_latents", *extra))
    assert result.global_step == 4 and all(torch.isfinite(torch.tensor(result.losses)))

    # every frozen weight is bit-identical to a fresh load
    fresh = load_models(str(model))
    trained = result.models
    assert trained.vae is None  # latents cached and nothing to sample: the VAE was freed
    for (key, a), (_, b) in zip(trained.unet.state_dict().items(), fresh.unet.state_dict().items()):
        assert torch.equal(a, b), f"unet.{key} changed"
    for key, value in fresh.text_encoders[0].state_dict().items():
        key = key.replace("token_embedding.weight", "token_embedding.base.weight")
        assert torch.equal(trained.text_encoders[0].state_dict()[key], value), key

    # the vectors moved away from the init word and the file holds exactly them
    vectors = result.tokens.vectors_by_slot()["emb_params"]
    star = fresh.text_encoders[0].get_input_embeddings().weight[fresh.tokenizers[0]("star", add_special_tokens=False).input_ids[0]]
    assert not torch.allclose(vectors[0], star)
    saved = load_file(str(tmp_path / "ti.safetensors"))
    assert set(saved) == {"emb_params"} and torch.equal(saved["emb_params"], vectors)
    assert (tmp_path / "ti_loss.png").is_file()


def test_weights_continue_from_a_file_and_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path, sd1_dataset):
    model = tiny_model_dir("sd1")
    full = run_training(train_argv(model, sd1_dataset, tmp_path / "full", steps=6))
    run_training(train_argv(model, sd1_dataset, tmp_path / "part", "--save_every_n_steps=2", "--save_state", steps=6))
    state = tmp_path / "part" / "ti-step00000002-state"
    assert state.is_dir() and sum(f.stat().st_size for f in state.iterdir()) < 64 * 1024  # kilobytes, not the model
    resumed = run_training(train_argv(model, sd1_dataset, tmp_path / "resumed", f"--resume={state}", steps=6))
    assert resumed.global_step == 6
    torch.testing.assert_close(resumed.tokens.vectors_by_slot(), full.tokens.vectors_by_slot(), rtol=0, atol=1e-6)

    # --weights starts from a file: with a zero learning rate the vectors stay exactly the file's
    cont = run_training(train_argv(model, sd1_dataset, tmp_path / "cont", f"--weights={tmp_path / 'full' / 'ti.safetensors'}", "--learning_rate=0", steps=1))
    assert torch.equal(cont.tokens.vectors_by_slot()["emb_params"], full.tokens.vectors_by_slot()["emb_params"])


def test_sampling_and_epoch_saves_follow_sd_scripts_names(tiny_model_dir, tmp_path, sd1_dataset):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"a {TOKEN} on a white background --w 64 --h 64 --s 2 --d 5\n")
    argv = train_argv(tiny_model_dir("sd1"), sd1_dataset, tmp_path / "out", f"--sample_prompts={prompts}", "--sample_every_n_steps=2",
                      "--save_every_n_epochs=1", "--save_model_as=pt", steps=6)
    run_training(argv)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.pt")) == ["ti-000001.pt", "ti-000002.pt", "ti.pt"]
    samples = sorted(p.name for p in (out / "sample").glob("*.png"))
    assert len(samples) == 3 and samples[0].startswith("ti_000002_00_") and samples[0].endswith("_5.png")
    emb = read_embedding(out / "ti.pt")
    assert emb.layout == "a1111" and emb.num_vectors == 2
    assert all(a1111_refusal(p) is None for p in out.glob("*.pt"))  # AUTOMATIC1111's safe unpickler loads them


def _exit_code_and_error(argv, capsys) -> tuple[int, str]:
    code = run_main(train_textual_inversion.main, argv)
    return code, capsys.readouterr().err


def test_bad_inputs_are_one_clear_line(tiny_model_dir, tmp_path, sd1_dataset, capsys):
    model = tiny_model_dir("sd1")
    base = train_argv(model, sd1_dataset, tmp_path)

    code, err = _exit_code_and_error([a if not a.startswith("--token_string") else "--token_string=cat" for a in base], capsys)
    assert code == 2 and "already exist" in err and "cat" in err

    code, err = _exit_code_and_error([a if not a.startswith("--token_string") else "--token_string=zzqqy7" for a in base], capsys)
    assert code == 2 and "none of the 4 captions" in err

    code, err = _exit_code_and_error(base + ["--optimizer_type=AdamWW"], capsys)
    assert code == 2 and "AdamW" in err

    wrong = tmp_path / "wrong.safetensors"
    save_embedding(wrong, {"emb_params": torch.zeros(3, 32)})
    code, err = _exit_code_and_error(base + [f"--weights={wrong}"], capsys)
    assert code == 2 and "3 vector(s)" in err and "--num_vectors_per_token" in err

    code, err = _exit_code_and_error(base + ["--optimizer_type=AdamW8bit"], capsys)
    if not torch.cuda.is_available():  # (fp16 trains on a CPU: tests/library/training/test_precision.py)
        assert code == 2 and "CUDA" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tiny_model_dir, tmp_path):
    model = tiny_model_dir("sd1")
    # two identical images: any split of the global batch over processes sees the same samples
    data = make_ti_dataset(tmp_path / "data", n=1, batch_size=2)
    (tmp_path / "data" / "images" / "00000.png").link_to(tmp_path / "data" / "images" / "00001.png")
    (tmp_path / "data" / "images" / "00001.txt").write_text((tmp_path / "data" / "images" / "00000.txt").read_text())
    one = run_training(train_argv(model, data, tmp_path / "one", "--lr_scheduler=constant", steps=3))

    data2 = tmp_path / "data" / "dataset_b1.toml"
    data2.write_text(data.read_text().replace("batch_size = 2", "batch_size = 1"))
    # torchrun is what `accelerate launch --multi_gpu` runs; on CPU accelerate then uses gloo (MULTI_CPU)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}", str(REPO / "train_textual_inversion.py"),
           *train_argv(model, data2, tmp_path / "two", "--lr_scheduler=constant", steps=3)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x2 process(es)" in done.stdout
    two = load_file(str(tmp_path / "two" / "ti.safetensors"))["emb_params"]
    torch.testing.assert_close(two, one.tokens.vectors_by_slot()["emb_params"], rtol=1e-4, atol=1e-5)


def test_precision_memory_loss_and_validation_options_run_together(tiny_model_dir, tmp_path, caplog):
    data = make_ti_dataset(tmp_path / "data", n=6)
    argv = train_argv(
        tiny_model_dir("sd1"), data, tmp_path / "out",
        "--mixed_precision=bf16", "--gradient_checkpointing", "--clip_skip=2", "--max_token_length=150",
        "--noise_offset=0.05", "--multires_noise_iterations=2", "--min_snr_gamma=5", "--loss_type=huber",
        "--gradient_accumulation_steps=2", "--lr_scheduler=cosine", "--lr_warmup_steps=0.25",
        "--validation_split=0.34", "--validate_every_n_steps=2", "--learning_rate=0.005:2, 0.001",
        steps=4,
    )
    with pytest.raises(Exception, match="already a schedule"):  # a piecewise learning rate is its own schedule
        run_training(argv)
    argv = [a for a in argv if not a.startswith("--learning_rate")] + ["--learning_rate=5e-3"]
    caplog.set_level("INFO")
    result = run_training(argv)
    assert result.global_step == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    assert result.models.unet.dtype == torch.bfloat16
    assert result.tokens.parameters()[0].dtype == torch.float32  # fp32 master vectors
    assert "validation loss" in caplog.text
    assert load_file(str(tmp_path / "out" / "ti.safetensors"))["emb_params"].dtype == torch.float32


def test_torch_compile_trains_the_same_vectors(tiny_model_dir, tmp_path, sd1_dataset):
    # aot_eager traces forward and backward through dynamo and AOTAutograd like inductor does, without the C++ build
    plain = run_training(train_argv(tiny_model_dir("sd1"), sd1_dataset, tmp_path / "plain", "--cache_latents"))
    compiled = run_training(train_argv(tiny_model_dir("sd1"), sd1_dataset, tmp_path / "compiled", "--cache_latents",
                                       "--torch_compile", "--dynamo_backend=aot_eager"))
    assert compiled.models.unet._compiled_call_impl is not None  # compiled in place: still a UNet2DConditionModel
    torch.testing.assert_close(compiled.tokens.vectors_by_slot()["emb_params"], plain.tokens.vectors_by_slot()["emb_params"],
                               rtol=1e-4, atol=1e-6)


def test_debug_dataset_shows_new_token_ids_and_trains_nothing(tiny_model_dir, tmp_path, sd1_dataset, capsys):
    result = run_training(train_argv(tiny_model_dir("sd1"), sd1_dataset, tmp_path / "out", "--debug_dataset", f"--debug_dataset_dir={tmp_path / 'dbg'}"))
    out = capsys.readouterr().out
    assert result.output_file is None and result.global_step == 0
    assert "toyxstar toyxstar1" in out and "49408" in out and "49409" in out
    assert len(list((tmp_path / "dbg").glob("*.png"))) >= 1
    assert not (tmp_path / "out" / "ti.safetensors").exists()


def test_a_non_finite_loss_stops_and_keeps_the_last_good_vectors(tiny_model_dir, tmp_path, sd1_dataset, capsys):
    argv = train_argv(tiny_model_dir("sd1"), sd1_dataset, tmp_path, "--learning_rate=1e36", "--max_grad_norm=0", "--optimizer_type=SGDNesterov", steps=6)
    assert run_main(train_textual_inversion.main, argv) == 2
    err = capsys.readouterr().err
    assert "the loss became" in err and "--skip_nan" in err
    saved = load_file(str(tmp_path / "ti.safetensors"))["emb_params"]
    assert torch.isfinite(saved).all()


def test_ctrl_c_saves_the_current_vectors(tiny_model_dir, tmp_path, sd1_dataset, monkeypatch):
    import library.training.loop as loop

    real_step, calls = loop.training_step, []

    def interrupt_on_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "training_step", interrupt_on_third_step)
    assert run_main(train_textual_inversion.main, train_argv(tiny_model_dir("sd1"), sd1_dataset, tmp_path, steps=6)) == 130
    emb = read_embedding(tmp_path / "ti.safetensors")
    assert emb.step == 2


def _dataset_with_regularisation_images(root):
    """Two images of the concept captioned with the token and two regularisation images without it."""
    make_dataset(root / "train", 2, seed=1, include=[HELD_OUT], caption_fn=lambda scene: caption(scene, subject=TOKEN))
    make_dataset(root / "reg", 2, seed=2, include=[HELD_OUT], caption_fn=lambda scene: caption(scene, subject="star"))
    config = root / "dataset.toml"
    config.write_text(
        "[general]\ncaption_extension = '.txt'\n[[datasets]]\nresolution = 64\nbatch_size = 1\n"
        f"[[datasets.subsets]]\nimage_dir = '{(root / 'train').as_posix()}'\n"
        f"[[datasets.subsets]]\nimage_dir = '{(root / 'reg').as_posix()}'\nis_reg = true\n"
    )
    return config


# --torch_compile keeps the graph (no recompile for no-grad mode) and skips only the backward
@pytest.mark.parametrize(("family", "accumulation", "extra"), [
    ("sd1", 1, []), ("sd1", 2, []), ("sdxl", 1, []), ("sd1", 1, ["--torch_compile", "--dynamo_backend=aot_eager"]),
])
def test_regularisation_batches_skip_the_backward_and_train_the_same_vectors(tiny_model_dir, tmp_path, monkeypatch, family, accumulation, extra):
    config = _dataset_with_regularisation_images(tmp_path / "data")
    sdxl = family == "sdxl"
    parser = train_textual_inversion.setup_parser(sdxl)

    def run(out):
        # AdamW's default weight decay and its momentum move the vectors on zero-gradient steps too
        argv = train_argv(tiny_model_dir(family), config, out, "--cache_latents", f"--gradient_accumulation_steps={accumulation}", *extra, steps=6)
        return loop.train(parse_args_with_config(parser, argv), sdxl=sdxl)

    skipping = run(tmp_path / "skipping")
    monkeypatch.setattr(loop, "batch_reaches_vectors", lambda *args: True)  # the plain path: a backward for every batch
    every_backward = run(tmp_path / "every_backward")

    assert skipping.skipped_backwards > 0 and every_backward.skipped_backwards == 0
    for slot, vectors in skipping.tokens.vectors_by_slot().items():
        assert torch.equal(vectors, every_backward.tokens.vectors_by_slot()[slot]), slot
    torch.testing.assert_close(torch.tensor(skipping.losses), torch.tensor(every_backward.losses))  # same logged losses


def test_files_and_samples_follow_the_published_vectors_and_states_keep_the_live_ones(tiny_model_dir, tmp_path, monkeypatch):
    real = TrainableTokens.published_vectors
    seen_while_sampling = []

    def published_plus_one(self):
        return {slot: vectors + 1.0 for slot, vectors in real(self).items()}

    import library.sampling as sampling

    real_sample_images = sampling.sample_images

    def recording_sample_images(models, *args, **kwargs):
        seen_while_sampling.append(models.text_encoders[0].get_input_embeddings().vectors.detach().float().cpu().clone())
        return real_sample_images(models, *args, **kwargs)

    monkeypatch.setattr(TrainableTokens, "published_vectors", published_plus_one)
    monkeypatch.setattr(sampling, "sample_images", recording_sample_images)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"a {TOKEN} --w 64 --h 64 --s 1 --d 1\n")
    argv = train_argv(tiny_model_dir("sd1"), make_ti_dataset(tmp_path / "data"), tmp_path / "out", "--save_state_on_train_end",
                      f"--sample_prompts={prompts}", "--sample_every_n_steps=2", steps=2)
    result = train(parse_args_with_config(train_textual_inversion.setup_parser(), argv), sdxl=False)

    live = result.tokens.vectors_by_slot()["emb_params"]
    assert torch.equal(load_file(str(tmp_path / "out" / "ti.safetensors"))["emb_params"], live + 1.0)
    assert torch.equal(load_file(str(tmp_path / "out" / "ti-state" / "vectors.safetensors"))["emb_params"], live)
    assert len(seen_while_sampling) == 1 and torch.equal(seen_while_sampling[0], live + 1.0)
