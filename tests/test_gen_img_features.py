"""gen_img.py's sd-scripts generation features on the tiny SD 1.x model (fp32, 2-6 steps, 64-128 px).

Flag names, defaults and file names follow kohya-ss/sd-scripts gen_img.py (main branch, checked 2026-12):
--highres_fix_steps 28, --ds_timesteps_1/2 650, --ds_ratio 0.5, --gradual_latent_ratio 0.5, _ratio_step 0.125,
_every_n_steps 3, _s_noise 1.0; high-resolution stage digits in names `im_{time}_0{NNN}_{seed}.png`,
`im_0{NNNNNN}.png`; --use_original_file_name -> `{source stem}.png`.
"""

import logging

import numpy as np
import pytest
from PIL import Image

from library.sampling.png_info import read_png_text
from tests.test_gen_img import SMALL, error_of, images, pixels, run


def gen(model, out, *flags, prompt="a red cube --d 3"):
    assert run("--ckpt", model, "--prompt", prompt, "--outdir", out, *flags) == 0
    return images(out)


def same(a, b) -> bool:
    return np.array_equal(pixels(a), pixels(b))


def test_highres_fix_saves_both_stages_at_their_sizes(tiny_model_dir, tmp_path):
    model = tiny_model_dir("sd1")
    out = gen(model, tmp_path / "hr", "--W", "128", "--H", "128", "--steps", "2", "--highres_fix_scale", "0.5",
              "--highres_fix_steps", "2", "--highres_fix_save_1st", "--sequential_file_name")
    assert [p.name for p in out] == ["im_0000001.png", "im_1000001.png"]
    assert [Image.open(p).size for p in out] == [(64, 64), (128, 128)]
    assert read_png_text(out[1])["seed"] == "3"  # the image's seed, as sd-scripts records it
    latent = gen(model, tmp_path / "lat", "--W", "128", "--H", "128", "--steps", "2", "--highres_fix_scale", "0.5",
                 "--highres_fix_steps", "2", "--highres_fix_latents_upscaling")
    assert len(latent) == 1 and "_1000_3.png" in latent[0].name and Image.open(latent[0]).size == (128, 128)
    assert not same(latent[0], out[1])


def test_options_that_must_not_change_pixels(tiny_model_dir, tmp_path):
    """VAE batching, channels-last, a never-firing Deep Shrink and probability-0 noise options keep the image."""
    model = tiny_model_dir("sd1")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube --d 1\na blue ball --d 2\n", encoding="utf-8")
    base = ["--ckpt", model, "--from_file", prompts, "--batch_size", "2", "--sequential_file_name", *SMALL]
    assert run(*base, "--outdir", tmp_path / "plain") == 0
    assert run(*base, "--outdir", tmp_path / "same", "--vae_batch_size", "0.5", "--opt_channels_last", "--no_preview",
               "--ds_depth_1", "1", "--ds_timesteps_1", "2000", "--noise_offset_prob", "0", "--noise_offset_range", "0.5", "1",
               "--pyramid_noise_prob", "0", "--pyramid_noise_discount_range", "0.2", "0.4") == 0
    for a, b in zip(images(tmp_path / "plain"), images(tmp_path / "same")):
        assert np.abs(pixels(a) - pixels(b)).max() <= 1


@pytest.mark.slow
def test_options_that_change_pixels(tiny_model_dir, tmp_path):
    model = tiny_model_dir("sd1")
    plain = gen(model, tmp_path / "plain", *SMALL, prompt="a (red:1.5) cube --d 3")[0]
    for name, flags in {
        "offset": ["--noise_offset_prob", "1", "--noise_offset_range", "0.5", "0.5"],
        "pyramid": ["--pyramid_noise_prob", "1", "--pyramid_noise_discount_range", "0.3", "0.3"],
        "ds": ["--ds_depth_1", "1", "--ds_timesteps_1", "0"],
        "normalize": ["--emb_normalize_mode", "none"],
        "zsnr": ["--zero_terminal_snr"],
    }.items():
        image = gen(model, tmp_path / name, *SMALL, *flags, prompt="a (red:1.5) cube --d 3")[0]
        assert not same(image, plain), name
    # a prompt's own Deep Shrink options switch it on for that prompt
    per_prompt = gen(model, tmp_path / "dsd", *SMALL, prompt="a (red:1.5) cube --d 3 --dsd1 1 --dst1 0")[0]
    assert same(per_prompt, images(tmp_path / "ds")[0])


@pytest.mark.slow
def test_gradual_latent_ends_at_full_size(tiny_model_dir, tmp_path):
    model = tiny_model_dir("sd1")
    common = ["--W", "128", "--H", "128", "--steps", "6", "--sampler", "euler_a"]
    plain = gen(model, tmp_path / "plain", *common)[0]
    grown = gen(model, tmp_path / "gl", *common, "--gradual_latent_timesteps", "999", "--gradual_latent_every_n_steps", "1",
                "--gradual_latent_ratio_step", "0.25", "--gradual_latent_unsharp_params", "3,0.5,0.5,1")[0]
    assert Image.open(grown).size == (128, 128) and not same(grown, plain)


@pytest.mark.slow
def test_shuffle_prompts_changes_the_order_per_iteration(tiny_model_dir, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i} --d {i}\n" for i in range(4)), encoding="utf-8")
    out = tmp_path / "out"
    assert run("--ckpt", tiny_model_dir("sd1"), "--from_file", prompts, "--n_iter", "2", "--shuffle_prompts", "--seed", "1",
               "--sequential_file_name", "--outdir", out, "--steps", "1", "--W", "64", "--H", "64") == 0
    order = [read_png_text(p)["prompt"] for p in images(out)]
    assert sorted(order[:4]) == sorted(order[4:]) == [f"prompt {i}" for i in range(4)]
    assert order[:4] != [f"prompt {i}" for i in range(4)] or order[4:] != order[:4]


def test_use_original_file_name(tiny_model_dir, tmp_path):
    (tmp_path / "src").mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "src" / "cat.png")
    out = tmp_path / "out"
    assert run("--ckpt", tiny_model_dir("sd1"), "--prompt", "a cat", "--image_path", tmp_path / "src", "--images_per_prompt", "2",
               "--use_original_file_name", "--steps", "2", "--strength", "0.5", "--outdir", out) == 0
    assert [p.name for p in images(out)] == ["cat.png", "cat_1.png"]


def test_vae_slices_decode_in_tiles(tiny_model_dir, tmp_path):
    model = tiny_model_dir("sd1")
    common = ["--W", "128", "--H", "128", "--steps", "2"]
    plain = gen(model, tmp_path / "plain", *common)[0]
    tiled = gen(model, tmp_path / "tiled", *common, "--vae_slices", "2")[0]
    assert Image.open(tiled).size == (128, 128) and not same(tiled, plain)


@pytest.mark.parametrize("argv, message", [
    (["--network_module", "networks.lora"], "--network_module is not part of this suite (LoRA"),
    (["--control_net_models", "cn.safetensors"], "--control_net_models is not part of this suite (ControlNet)"),
    (["--highres_fix_scale", "0.5", "--highres_fix_upscaler", "tools.latent_upscaler"], "--highres_fix_upscaler is not part of this suite"),
    (["--highres_fix_save_1st"], "--highres_fix_save_1st needs --highres_fix_scale"),
    (["--highres_fix_scale", "2"], "--highres_fix_scale must be between 0 and 1"),
    (["--gradual_latent_timesteps", "650"], "works only with --sampler euler_a (got ddim)"),
    (["--zero_terminal_snr", "--sampler", "heun"], "--zero_terminal_snr does not work with --sampler heun"),
    (["--noise_offset_prob", "0.5"], "--noise_offset_prob needs --noise_offset_range"),
    (["--pyramid_noise_discount_range", "0.1", "0.2"], "--pyramid_noise_discount_range has no effect without --pyramid_noise_prob"),
    (["--ds_depth_2", "3"], "--ds_depth_2 needs --ds_depth_1"),
    (["--use_original_file_name"], "--use_original_file_name needs --image_path"),
    (["--sampler", "euler_a", "--gradual_latent_timesteps", "650", "--gradual_latent_unsharp_params", "4,1,1"], "kernel size must be odd"),
])
def test_feature_flag_errors(capsys, tmp_path, argv, message):
    err = error_of(capsys, "--ckpt", "m", "--prompt", "x", "--outdir", tmp_path, *argv)
    assert message in err and "Traceback" not in err


def test_deep_shrink_depth_outside_the_model(capsys, tiny_model_dir, tmp_path):
    err = error_of(capsys, "--ckpt", tiny_model_dir("sd1"), "--prompt", "x", "--ds_depth_1", "9", "--outdir", tmp_path, *SMALL)
    assert "--ds_depth_1: Deep Shrink depth 9 is outside this model's input blocks 0-3" in err


def test_several_problems_are_listed_at_once(capsys, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    err = error_of(capsys, "--ckpt", "m", "--prompt", "x", "--network_weights", "a.safetensors", "--ds_depth_2", "1")
    assert "2 problems with the flags" in err and "--network_weights" in err and "--ds_depth_2" in err
