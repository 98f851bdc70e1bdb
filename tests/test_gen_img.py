"""gen_img.py end to end on tiny saved models: images, names, metadata, seeds, embeddings, errors."""

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gen_img import main
from library.cli import run_main
from library.sampling.png_info import parse_parameters, read_png_text

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--W", "64", "--H", "64", "--steps", "2"]


def run(*argv) -> int:
    return run_main(main, [str(a) for a in argv])


def images(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


def test_prompt_with_options_writes_an_image_with_metadata(tiny_model_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gen_img")
    out = tmp_path / "out"
    assert run("--ckpt", tiny_model_dir("sd1"), "--prompt", "a photo of a cat --n blurry --l 6 --d 42", "--outdir", out, *SMALL) == 0
    (path,) = images(out)
    assert path.name.startswith("im_") and path.name.endswith("_000_42.png")
    parsed = parse_parameters(read_png_text(path)["parameters"])
    assert (parsed["prompt"], parsed["negative_prompt"], parsed["Seed"], parsed["CFG scale"]) == ("a photo of a cat", "blurry", "42", "6.0")
    assert (parsed["Steps"], parsed["Sampler"], parsed["Size"]) == ("2", "DDIM", "64x64")
    assert "generating 1 image(s): 1 prompt(s) x 1 per prompt x 1 iteration(s)" in caplog.text


def test_the_same_seed_gives_the_same_image(tiny_model_dir, tmp_path):
    for name in ("a", "b", "c"):
        seed = "7" if name != "c" else "8"
        assert run("--ckpt", tiny_model_dir("sd1"), "--prompt", "a red cube", "--seed", seed, "--outdir", tmp_path / name, *SMALL) == 0
    a, b, c = (pixels(images(tmp_path / n)[0]) for n in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_prompt_file_batches_and_sequential_names(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\na cat --d 1,2\n\na dog --w 128 --n ugly\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run("--ckpt", tiny_model_dir("sd1"), "--from_file", prompts, "--images_per_prompt", "2", "--batch_size", "2",
               "--sequential_file_name", "--seed", "3", "--outdir", out, *SMALL) == 0
    assert [p.name for p in images(out)] == [f"im_00000{i}.png" for i in range(1, 5)]
    seeds = [read_png_text(p)["seed"] for p in images(out)]
    assert seeds[:2] == ["1", "2"]
    assert Image.open(images(out)[3]).size == (128, 64)
    # a second run continues the numbering instead of overwriting
    assert run("--ckpt", tiny_model_dir("sd1"), "--prompt", "x", "--sequential_file_name", "--outdir", out, *SMALL) == 0
    assert images(out)[-1].name == "im_000005.png"


def test_sdxl_embedding_changes_only_prompts_that_use_it(tiny_model_dir, tmp_path):
    from library.embeddings import save_embedding

    torch.manual_seed(0)
    (embedding,) = save_embedding(tmp_path / "mychar4.safetensors", {"clip_l": torch.randn(2, 32) * 3, "clip_g": torch.randn(2, 64) * 3})
    prompts = tmp_path / "p.txt"
    prompts.write_text("a photo of (mychar4:1.1) --d 1\na photo of a cat --d 1\n", encoding="utf-8")
    common = ["--ckpt", tiny_model_dir("sdxl"), "--from_file", prompts, "--sequential_file_name", *SMALL]
    assert run(*common, "--outdir", tmp_path / "plain") == 0
    assert run(*common, "--outdir", tmp_path / "emb", "--textual_inversion_embeddings", embedding) == 0
    plain, emb = images(tmp_path / "plain"), images(tmp_path / "emb")
    assert not np.array_equal(pixels(plain[0]), pixels(emb[0]))
    assert np.array_equal(pixels(plain[1]), pixels(emb[1]))
    parsed = parse_parameters(read_png_text(emb[0])["parameters"])
    assert parsed["TI hashes"].startswith("mychar4: ") and "TI hashes" not in parse_parameters(read_png_text(emb[1])["parameters"])
    assert read_png_text(emb[0])["original-width"] == "64"


def test_sd2_v_prediction_with_options(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    long_prompt = ", ".join(["a (red:1.2) cat"] * 30)
    assert run("--ckpt", tiny_model_dir("sd2"), "--prompt", long_prompt, "--sampler", "k_euler_a", "--clip_skip", "2",
               "--negative_scale", "2", "--n_iter", "2", "--seed", "5", "--outdir", out, *SMALL) == 0
    assert len(images(out)) == 2
    parsed = parse_parameters(read_png_text(images(out)[0])["parameters"])
    assert (parsed["Sampler"], parsed["Clip skip"], parsed["Negative scale"]) == ("Euler a", "2", "2.0")


def test_img2img_and_inpainting(tiny_model_dir, tmp_path):
    Image.new("RGB", (72, 64), (30, 200, 30)).save(tmp_path / "init.png")
    Image.new("L", (72, 64), 255).save(tmp_path / "mask.png")
    # one folder per run: names sort by timestamp, then by seed, so two runs in the same second would interleave
    assert run("--ckpt", tiny_model_dir("sd1"), "--prompt", "a cat", "--image_path", tmp_path / "init.png",
               "--strength", "0.5", "--steps", "4", "--outdir", tmp_path / "img2img") == 0
    assert run("--ckpt", tiny_model_dir("sd1"), "--prompt", "a cat", "--image_path", tmp_path / "init.png",
               "--mask_path", tmp_path / "mask.png", "--steps", "2", "--bf16", "--no_half_vae", "--outdir", tmp_path / "inpaint") == 0
    [img2img], [inpainted] = images(tmp_path / "img2img"), images(tmp_path / "inpaint")
    assert Image.open(img2img).size == Image.open(inpainted).size == (72, 64)
    assert parse_parameters(read_png_text(img2img)["parameters"])["Denoising strength"] == "0.5"


def test_img2img_without_prompt_takes_each_images_prompt_from_its_metadata(tiny_model_dir, tmp_path):
    sources = tmp_path / "sources"
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube --n blurry --d 1\na blue ball --d 2\n", encoding="utf-8")
    assert run("--ckpt", tiny_model_dir("sd1"), "--from_file", prompts, "--outdir", sources, *SMALL) == 0
    out = tmp_path / "out"
    assert run("--ckpt", tiny_model_dir("sd1"), "--image_path", sources, "--images_per_prompt", "2",
               "--strength", "0.5", "--steps", "2", "--sequential_file_name", "--outdir", out) == 0
    got = [(read_png_text(p)["prompt"], read_png_text(p).get("negative-prompt")) for p in images(out)]
    assert got == [("a red cube", "blurry")] * 2 + [("a blue ball", None)] * 2


def test_img2img_without_prompt_or_metadata_is_an_error(tiny_model_dir, tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "plain.png")
    err = error_of(capsys, "--ckpt", tiny_model_dir("sd1"), "--image_path", tmp_path / "plain.png")
    assert "plain.png has no prompt in its metadata" in err


@pytest.mark.slow
def test_interactive_reads_prompts_from_a_pipe(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    lines = "a cat --d 1\n\nbad line --zz 1\na dog --d 2\n"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, str(REPO / "gen_img.py"), "--ckpt", str(tiny_model_dir("sd1")), "--interactive",
                           "--outdir", str(out), *SMALL], input=lines, capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "stdin line 3: unknown option --zz" in done.stderr
    assert [read_png_text(p)["prompt"] for p in images(out)] == ["a cat", "a dog"]


# ---- errors: one line naming what is wrong, exit code 2 -------------------------------------------------------

def error_of(capsys, *argv) -> str:
    assert run(*argv) == 2
    return capsys.readouterr().err


def test_missing_model(capsys, tmp_path):
    err = error_of(capsys, "--ckpt", tmp_path / "nope.safetensors", "--prompt", "x")
    assert "error: --ckpt" in err and "nope.safetensors" in err


def test_unreadable_prompt_file(capsys, tmp_path):
    assert "error: prompt file" in error_of(capsys, "--ckpt", "m", "--from_file", tmp_path / "missing.txt")


def test_malformed_options_in_a_prompt_file_are_warnings_naming_file_and_line(capsys, caplog, tmp_path):
    """Every kind of malformed option gets the same treatment in a file: a warning, the option skipped."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat --d 1\na dog --foo 2\na bird --n\na fish --w abc\na cow --am 0.5\n", encoding="utf-8")
    caplog.set_level(logging.WARNING)
    # no model: the prompts are read (and warned about) before the model load fails
    err = error_of(capsys, "--ckpt", tmp_path / "nope.safetensors", "--from_file", prompts, "--outdir", tmp_path / "o")
    assert "error: --ckpt" in err
    for line, problem in [(2, "unknown option --foo"), (3, "option --n (negative prompt) has no value"),
                          (4, "bad value 'abc' for --w"), (5, "option --am (additional-network multipliers) is not supported")]:
        assert f"{prompts} line {line}: {problem}" in caplog.text


@pytest.mark.parametrize("prompt, problem", [
    ("a mychar4 --n", "--prompt: option --n (negative prompt) has no value"),
    ("a mychar4 --d", "--prompt: option --d"),
    ("a mychar4 --w abc", "--prompt: bad value 'abc' for --w"),
    ("a mychar4 --foo 1", "--prompt: unknown option --foo"),
    ("a mychar4 --cn x", "--prompt: option --cn (ControlNet images) is not supported"),
])
def test_malformed_options_in_prompt_are_errors(capsys, tmp_path, prompt, problem):
    assert problem in error_of(capsys, "--ckpt", "m", "--prompt", prompt, "--outdir", tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ckpt", "m"], "nothing to generate"),
        (["--prompt", "x"], "--ckpt is required"),
        (["--ckpt", "m", "--prompt", "x", "--interactive"], "give only one of --prompt, --interactive"),
        (["--ckpt", "m", "--prompt", "x", "--sampler", "magic"], "unknown sampler 'magic'"),
        (["--ckpt", "m", "--prompt", "x", "--steps", "0"], "--steps must be between 1 and 1000"),
        (["--ckpt", "m", "--prompt", "x", "--mask_path", "m.png"], "--mask_path needs --image_path"),
        (["--ckpt", "m", "--prompt", "x", "--image_path", "nowhere.png"], "--image_path nowhere.png: no such file"),
        (["--ckpt", "m", "--prompt", "x", "--textual_inversion_embeddings", "none.pt"], "none.pt: no such file"),
    ],
)
def test_flag_errors(capsys, argv, message):
    assert message in error_of(capsys, *argv)


def test_fp16_generates_on_the_cpu_too(tiny_model_dir, tmp_path):
    # PyTorch 2.x runs fp16 convolutions, linears and attention on the CPU: --fp16 is not a GPU-only flag
    out = tmp_path / "out"
    assert run("--ckpt", tiny_model_dir("sd1"), "--prompt", "a red cube", "--fp16", "--seed", "3", "--outdir", out, *SMALL) == 0
    (path,) = images(out)
    assert pixels(path).std() > 0  # a real picture, not a NaN-black square


@pytest.mark.skipif(importlib.util.find_spec("xformers") is not None, reason="xformers is installed")
def test_xformers_missing_says_how_to_install(capsys):
    assert "--xformers needs the package 'xformers'" in error_of(capsys, "--ckpt", "m", "--prompt", "x", "--xformers")


@pytest.mark.slow
@pytest.mark.training  # the demo fixture trains the embedding
def test_the_demo_embedding_draws_its_concept_on_the_toy_model(toy_demo_out, tmp_path):
    """End to end on the shipped toy model: the embedding the README's main job trained, loaded by file name."""
    from library.toyworld.classifier import classify
    from library.toyworld.model import TOY_MODEL_DIR
    from library.toyworld.world import BACKGROUNDS, HELD_OUT

    def purple_stars(subject: str, out: Path) -> int:
        prompts = tmp_path / f"{subject}.txt"
        prompts.write_text("".join(f"a {subject} on a {BACKGROUNDS[i % 3]} background --d {i}\n" for i in range(12)))
        assert run("--ckpt", TOY_MODEL_DIR, "--textual_inversion_embeddings", toy_demo_out / "toyxstar.safetensors",
                   "--from_file", prompts, "--W", "64", "--H", "64", "--steps", "25", "--scale", "5",
                   "--sequential_file_name", "--outdir", out) == 0
        return sum(classify(Image.open(p)).concept == HELD_OUT for p in images(out))

    with_token = purple_stars("toyxstar", tmp_path / "token")
    init_word_only = purple_stars("star", tmp_path / "star")  # same seeds, the embedding loaded but not used
    assert with_token >= 8 and with_token - init_word_only >= 6, (with_token, init_word_only)
    parameters = parse_parameters(read_png_text(images(tmp_path / "token")[0])["parameters"])
    assert "toyxstar" in parameters["TI hashes"]


def test_an_unwritable_outdir_is_refused_before_the_model_loads(capsys, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    # --ckpt names no model: the outdir check comes first, so the error is about --outdir
    err = error_of(capsys, "--ckpt", tmp_path / "nope.safetensors", "--prompt", "x", "--outdir", tmp_path / "file.txt" / "out")
    assert "error: --outdir" in err and "file.txt is a file" in err and "Traceback" not in err


def test_embeddings_folder_is_searched_recursively_and_lists_its_triggers(tiny_model_dir, tmp_path, caplog):
    """As AUTOMATIC1111's embeddings folder: every embedding file below it, each triggered by its file name."""
    import base64
    import json

    from PIL import PngImagePlugin

    from library.embeddings import save_embedding

    folder = tmp_path / "embeddings"
    (folder / "chars").mkdir(parents=True)
    torch.manual_seed(0)
    save_embedding(folder / "mychar4.safetensors", {"emb_params": torch.randn(2, 32) * 3})
    save_embedding(folder / "chars" / "otherchar.pt", {"emb_params": torch.randn(1, 32) * 3})
    # an A1111 embedding image (text-chunk form) and a plain preview image beside it
    payload = {"string_to_param": {"*": {"TORCHTENSOR": (torch.randn(1, 32) * 3).tolist()}}, "name": "pngchar"}
    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(json.dumps(payload).encode()).decode())
    Image.new("RGB", (8, 8)).save(folder / "chars" / "pngchar.png", pnginfo=info)
    Image.new("RGB", (8, 8)).save(folder / "mychar4.preview.png")
    (folder / "notes.txt").write_text("not an embedding")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a photo of otherchar --d 1\na photo of pngchar --d 1\na photo of a cat --d 1\n", encoding="utf-8")
    caplog.set_level(logging.INFO)
    common = ["--ckpt", tiny_model_dir("sd1"), "--from_file", prompts, "--sequential_file_name", *SMALL]
    assert run(*common, "--outdir", tmp_path / "emb", "--textual_inversion_embeddings", folder) == 0
    assert "3 embedding file(s) found" in caplog.text
    assert "trigger words: otherchar (1 vector(s)), pngchar (1 vector(s)), mychar4 (2 vector(s))" in caplog.text
    assert f"{prompts} line 3: the prompt uses none of the embeddings' trigger words (otherchar, pngchar, mychar4)" in caplog.text
    assert run(*common, "--outdir", tmp_path / "plain") == 0
    emb, plain = images(tmp_path / "emb"), images(tmp_path / "plain")
    assert not np.array_equal(pixels(emb[0]), pixels(plain[0])) and not np.array_equal(pixels(emb[1]), pixels(plain[1]))
    assert np.array_equal(pixels(emb[2]), pixels(plain[2]))


def test_an_embeddings_folder_without_embeddings_is_an_error(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    err = error_of(capsys, "--ckpt", "m", "--prompt", "x", "--textual_inversion_embeddings", tmp_path / "empty",
                   "--outdir", tmp_path / "o")
    assert "--textual_inversion_embeddings" in err and "holds no embedding files" in err
