"""The table of bad inputs: one row per kind, each building its input in the case's folder.

Rows return the trainer's argv (built from the good one, `ctx.argv(...)`); `names` are what the one-line error must
say (the flag, the file, the key). Most fail while flags, files or the dataset are checked, before training, so they
run in-process in milliseconds to a second.
"""

from __future__ import annotations

import json
import shutil

import torch
from safetensors.torch import save_file

from tests.adversarial import bad_files as bad
from tests.adversarial.harness import Case


def _dataset(ctx, body: str, name: str = "bad.toml"):
    return ctx.write(name, body)


def _toml_for(ctx, subset_extra: str = "", dataset_extra: str = "", images=None) -> str:
    images = images or ctx.images
    return (f"[general]\ncaption_extension = '.txt'\n[[datasets]]\nresolution = 64\nbatch_size = 2\n{dataset_extra}\n"
            f"[[datasets.subsets]]\nimage_dir = '{images.as_posix()}'\n{subset_extra}\n")


def _images_with(ctx, name: str, maker) -> str:
    """A copy of the good images plus one bad file; returns the dataset TOML path."""
    folder = ctx.tmp / "images_bad"
    if not folder.exists():
        shutil.copytree(ctx.images, folder)
    maker(folder / name)
    return str(_dataset(ctx, _toml_for(ctx, images=folder)))


def _metadata(ctx, content: str) -> str:
    meta = ctx.write("meta.json", content)
    return str(_dataset(ctx, (f"[[datasets]]\nresolution = 64\nbatch_size = 2\n[[datasets.subsets]]\n"
                              f"image_dir = '{ctx.images.as_posix()}'\nmetadata_file = '{meta.as_posix()}'\n")))


def _damaged_model(ctx, relative: str, how) -> str:
    model = ctx.model_copy()
    how(model / relative)
    return str(model)


def _state(ctx, **damage) -> str:
    """A state folder like the trainer writes, with one piece replaced."""
    state = ctx.tmp / "ti-step00000002-state"
    state.mkdir()
    save_file({"emb_params": torch.zeros(2, 32)}, str(state / "vectors.safetensors"))
    torch.save({"state": {}, "param_groups": []}, state / "optimizer.pt")
    torch.save({"last_epoch": 0}, state / "lr_scheduler.pt")
    (state / "progress.json").write_text(json.dumps({"global_step": 2, "token_names": ["toyxstar", "toyxstar1"]}))
    for name, action in damage.items():
        action(state / name.replace("_pt", ".pt").replace("_json", ".json").replace("_st", ".safetensors"))
    return str(state)


def _weights(ctx, value: float, shape=(2, 32)) -> str:
    return str(bad.non_finite_embedding(ctx.tmp / "start.safetensors", value, shape))


def _rm(path):
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _config(ctx, text: str) -> str:
    return str(ctx.write("run.toml", text))


# ---- flags: refused while parsing or checking, before any model is loaded
FLAG_CASES = [
    Case("unknown flag", lambda c: c.argv("--not_a_flag=1"), ("--not_a_flag",)),
    Case("max_train_steps abc", lambda c: c.argv("--max_train_steps=abc"), ("--max_train_steps", "abc")),
    Case("max_train_steps 0", lambda c: c.argv("--max_train_steps=0"), ("--max_train_steps",)),
    Case("max_train_epochs 0", lambda c: c.argv("--max_train_epochs=0"), ("--max_train_epochs",)),
    Case("train_batch_size 0", lambda c: c.argv("--train_batch_size=0"), ("--train_batch_size",)),
    Case("gradient_accumulation_steps 0", lambda c: c.argv("--gradient_accumulation_steps=0"), ("--gradient_accumulation_steps",)),
    Case("save_every_n_steps 0", lambda c: c.argv("--save_every_n_steps=0"), ("--save_every_n_steps",)),
    Case("save_every_n_epochs 0", lambda c: c.argv("--save_every_n_epochs=0"), ("--save_every_n_epochs",)),
    Case("save_every_n_steps negative", lambda c: c.argv("--save_every_n_steps=-5"), ("--save_every_n_steps",)),
    Case("output_name empty", lambda c: c.argv("--output_name="), ("--output_name",)),
    Case("output_name with a slash", lambda c: c.argv("--output_name=sub/ti"), ("--output_name", "sub/ti")),
    Case("output_name dot-dot", lambda c: c.argv("--output_name=.."), ("--output_name",)),
    Case("unknown save_model_as", lambda c: c.argv("--save_model_as=bin"), ("--save_model_as", "bin")),
    Case("max_grad_norm -1", lambda c: c.argv("--max_grad_norm=-1"), ("--max_grad_norm",)),
    Case("max_grad_norm nan", lambda c: c.argv("--max_grad_norm=nan"), ("--max_grad_norm",)),
    Case("learning_rate negative", lambda c: c.argv("--learning_rate=-1"), ("--learning_rate",)),
    Case("learning_rate nan", lambda c: c.argv("--learning_rate=nan"), ("--learning_rate",)),
    Case("num_vectors_per_token 0", lambda c: c.argv("--num_vectors_per_token=0"), ("--num_vectors_per_token",)),
    Case("num_vectors_per_token 100", lambda c: c.argv("--num_vectors_per_token=100"), ("--num_vectors_per_token", "75")),
    Case("num_vectors_per_token 151 with max_token_length 150",
         lambda c: c.argv("--num_vectors_per_token=151", "--max_token_length=150"), ("--num_vectors_per_token", "150")),
    Case("max_token_length 100", lambda c: c.argv("--max_token_length=100"), ("--max_token_length",)),
    Case("token_string empty", lambda c: c.argv("--token_string="), ("--token_string",)),
    Case("token_string an existing word", lambda c: c.argv("--token_string=cat"), ("cat",)),
    Case("8-bit optimizer on CPU", lambda c: c.argv("--optimizer_type=AdamW8bit") if not torch.cuda.is_available() else c.argv("--full_bf16"),
         ("--optimizer_type AdamW8bit",) if not torch.cuda.is_available() else ("--full_bf16",)),
    Case("full_fp16 without fp16", lambda c: c.argv("--full_fp16"), ("--full_fp16",)),
    Case("cache_latents with color_aug", lambda c: c.argv("--cache_latents", "--color_aug"), ("--cache_latents", "--color_aug")),
    Case("resolution abc", lambda c: c.argv("--resolution=abc"), ("--resolution",)),
    Case("seed abc", lambda c: c.argv("--seed=abc"), ("--seed",)),
    Case("unknown optimizer", lambda c: c.argv("--optimizer_type=AdamWW"), ("AdamWW",)),
    Case("malformed optimizer_args", lambda c: c.argv("--optimizer_args", "weight_decay"), ("weight_decay",)),
    Case("unknown lr_scheduler", lambda c: c.argv("--lr_scheduler=bogus"), ("--lr_scheduler",)),
    Case("validation_split 1.5", lambda c: c.argv("--validation_split=1.5"), ("--validation_split",)),
    Case("keep_tokens -1", lambda c: c.argv("--keep_tokens=-1"), ("--keep_tokens",)),
    Case("two template sources", lambda c: c.argv("--use_object_template", "--use_style_template"), ("--use_object_template", "--use_style_template")),
    Case("huber_c 0", lambda c: c.argv("--loss_type=huber", "--huber_c=0"), ("--huber_c",)),
    Case("adaptive_noise_scale without noise_offset", lambda c: c.argv("--adaptive_noise_scale=0.1"), ("--adaptive_noise_scale",)),
    Case("log_with without logging_dir", lambda c: c.argv("--log_with=tensorboard"), ("--log_with",)),
    Case("dataset_config with train_data_dir", lambda c: c.argv(f"--train_data_dir={c.images}"), ("--dataset_config", "--train_data_dir")),
    Case("no dataset at all", lambda c: c.without(c.argv(), "--dataset_config"), ("--dataset_config", "--train_data_dir")),
    Case("dataset_config missing", lambda c: c.argv(f"--dataset_config={c.tmp / 'nope.toml'}"), ("nope.toml",)),
    Case("train_data_dir missing", lambda c: c.without(c.argv(f"--train_data_dir={c.tmp / 'nodir'}"), "--dataset_config"), ("nodir",)),
    Case("template_file missing", lambda c: c.argv(f"--template_file={c.tmp / 'tpl.txt'}"), ("tpl.txt",)),
    Case("sample_prompts missing", lambda c: c.argv(f"--sample_prompts={c.tmp / 'prompts.txt'}", "--sample_every_n_steps=1"), ("prompts.txt",)),
    Case("resume missing folder", lambda c: c.argv(f"--resume={c.tmp / 'gone-state'}"), ("--resume", "gone-state")),
    Case("resume a file", lambda c: c.argv(f"--resume={c.good}"), ("--resume",)),
    Case("pretrained model missing", lambda c: c.argv(model=c.tmp / "nomodel.safetensors"), ("nomodel.safetensors",)),
    Case("vae missing", lambda c: c.argv(f"--vae={c.tmp / 'novae.safetensors'}"), ("--vae", "novae.safetensors")),
    Case("weights missing", lambda c: c.argv(f"--weights={c.tmp / 'none.safetensors'}"), ("none.safetensors",)),
    Case("output_dir under a regular file", lambda c: c.argv(f"--output_dir={c.good}/sub"), ("--output_dir",)),
    Case("output_dir is a file", lambda c: c.argv(f"--output_dir={c.good}"), ("--output_dir",)),
    Case("tokenizer_cache_dir under a file", lambda c: c.argv(f"--tokenizer_cache_dir={c.good}/tok"), ("--tokenizer_cache_dir",)),
]

# ---- config files: --config_file (run flags) and --dataset_config (datasets)
CONFIG_CASES = [
    Case("config_file missing", lambda c: c.argv(f"--config_file={c.tmp / 'missing.toml'}"), ("missing.toml",)),
    Case("config_file not TOML", lambda c: c.argv(f"--config_file={_config(c, 'learning_rate = = 1')}"), ("run.toml",)),
    # sd-scripts reads config files with keys of other scripts: unknown keys are warned about and ignored
    Case("config_file unknown key", lambda c: c.argv(f"--config_file={_config(c, 'no_such_option = 1')}"), expect="ok"),
    Case("config_file wrong type", lambda c: c.argv("--config_file=" + _config(c, 'max_train_steps = "many"')), ("max_train_steps",)),
    Case("config_file binary", lambda c: c.argv(f"--config_file={c.write('run.toml', bytes(range(256)))}"), ("run.toml",)),
    Case("dataset TOML syntax error", lambda c: c.argv(f"--dataset_config={_dataset(c, '[[datasets]')}"), ("bad.toml",), multiline=True),
    Case("dataset TOML unknown key", lambda c: c.argv(f"--dataset_config={_dataset(c, _toml_for(c, 'colour = 1'))}"), ("colour",), multiline=True),
    Case("dataset TOML batch_size 0", lambda c: c.argv(f"--dataset_config={_dataset(c, _toml_for(c).replace('batch_size = 2', 'batch_size = 0'))}"),
         ("batch_size",), multiline=True),
    Case("dataset TOML resolution text", lambda c: c.argv("--dataset_config=" + str(_dataset(c, _toml_for(c).replace("resolution = 64", 'resolution = "big"')))),
         ("resolution",), multiline=True),
    Case("dataset TOML image_dir missing", lambda c: c.argv(f"--dataset_config={_dataset(c, _toml_for(c, images=c.tmp / 'noimages'))}"),
         ("noimages",), multiline=True),
    Case("dataset image_dir empty", lambda c: (c.tmp / "empty").mkdir() or c.argv(f"--dataset_config={_dataset(c, _toml_for(c, images=c.tmp / 'empty'))}"),
         ("empty",), multiline=True),
    Case("dataset TOML num_repeats 0", lambda c: c.argv(f"--dataset_config={_dataset(c, _toml_for(c, 'num_repeats = 0'))}"), ("num_repeats",), multiline=True),
    Case("metadata caption is a number", lambda c: c.argv(f"--dataset_config={_metadata(c, json.dumps({'00000.png': {'caption': 5}}))}"),
         ("meta.json", "00000.png", "caption"), multiline=True),
    Case("metadata tags is a list", lambda c: c.argv(f"--dataset_config={_metadata(c, json.dumps({'00000.png': {'tags': ['a']}}))}"),
         ("meta.json", "tags"), multiline=True),
    Case("metadata entry is a string", lambda c: c.argv(f"--dataset_config={_metadata(c, json.dumps({'00000.png': 'toyxstar'}))}"),
         ("meta.json", "00000.png"), multiline=True),
    Case("metadata not JSON", lambda c: c.argv(f"--dataset_config={_metadata(c, '{oops')}"), ("meta.json",), multiline=True),
    Case("metadata a list", lambda c: c.argv(f"--dataset_config={_metadata(c, '[1, 2]')}"), ("meta.json",), multiline=True),
    Case("no caption has the token", lambda c: c.argv("--token_string=zzqqy7"), ("zzqqy7",)),
]

# ---- images: found by the dataset scan, before any model is loaded
IMAGE_CASES = [
    Case("truncated PNG", lambda c: c.argv(f"--dataset_config={_images_with(c, 'cut.png', lambda p: p.write_bytes((c.images / '00000.png').read_bytes()[:300]))}"),
         ("cut.png",), multiline=True),
    Case("empty image file", lambda c: c.argv(f"--dataset_config={_images_with(c, 'empty.png', lambda p: p.write_bytes(b''))}"), ("empty.png",), multiline=True),
    Case("text file named .png", lambda c: c.argv(f"--dataset_config={_images_with(c, 'text.png', lambda p: p.write_text('hello'))}"), ("text.png",), multiline=True),
    Case("truncated JPEG", lambda c: c.argv("--dataset_config=" + _images_with(c, "cut.jpg", lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 100))),
         ("cut.jpg",), multiline=True),
    Case("decompression bomb PNG", lambda c: c.argv(f"--dataset_config={_images_with(c, 'bomb.png', bad.decompression_bomb_png)}"),
         ("bomb.png", "decompression bomb"), multiline=True),
    Case("zero-pixel PNG header", lambda c: c.argv(f"--dataset_config={_images_with(c, 'zero.png', lambda p: bad.decompression_bomb_png(p, 0, 0))}"),
         ("zero.png",), multiline=True),
    # a folder is not an image, whatever its name: the scan lists files only
    Case("image that is a folder", lambda c: c.argv(f"--dataset_config={_images_with(c, 'dir.png', lambda p: p.mkdir())}"), expect="ok"),
]

# ---- models: damaged or malicious files on every loader path
MODEL_CASES = [
    Case("diffusers unet cut in half", lambda c: c.argv(model=_damaged_model(c, "unet/diffusion_pytorch_model.safetensors", bad.cut_in_half)),
         ("diffusion_pytorch_model.safetensors", "cut short")),
    Case("diffusers unet cut, fp16 load", lambda c: c.argv("--mixed_precision=bf16", model=_damaged_model(c, "unet/diffusion_pytorch_model.safetensors", bad.cut_in_half)),
         ("diffusion_pytorch_model.safetensors", "cut short")),
    Case("diffusers vae cut in half", lambda c: c.argv(model=_damaged_model(c, "vae/diffusion_pytorch_model.safetensors", bad.cut_in_half)),
         ("vae", "cut short")),
    Case("diffusers text encoder cut in half", lambda c: c.argv(model=_damaged_model(c, "text_encoder/model.safetensors", bad.cut_in_half)),
         ("text_encoder", "cut short")),
    Case("diffusers text encoder malicious .bin", lambda c: c.argv(model=_damaged_model(
        c, "text_encoder/model.safetensors", lambda p: (p.unlink(), bad.malicious_pickle(p.with_name("pytorch_model.bin"), c.tmp / bad.PWNED)))),
         ("text_encoder/pytorch_model.bin", "refused")),
    Case("diffusers unet malicious .bin", lambda c: c.argv(model=_damaged_model(
        c, "unet/diffusion_pytorch_model.safetensors", lambda p: (p.unlink(), bad.malicious_pickle(p.with_suffix(".bin"), c.tmp / bad.PWNED)))),
         ("unet", "refused")),
    Case("diffusers unet missing", lambda c: c.argv(model=_damaged_model(c, "unet", _rm)), ("unet",)),
    Case("diffusers unet config not JSON", lambda c: c.argv(model=_damaged_model(c, "unet/config.json", lambda p: p.write_text("{"))), ("unet",)),
    Case("diffusers folder empty", lambda c: (c.tmp / "emptymodel").mkdir() or c.argv(model=c.tmp / "emptymodel"), ("emptymodel",)),
    Case("unet file missing tensors", lambda c: c.argv(model=_damaged_model(c, "unet/diffusion_pytorch_model.safetensors",
                                                                            lambda p: save_file(dict(list(_load(p).items())[:5]), str(p)))),
         ("unet",)),
    Case("single file cut in half", lambda c: c.argv(model=bad.cut_in_half(_single(c))), ("tiny.safetensors", "cut short")),
    Case("single file is text", lambda c: c.argv(model=c.write("tiny.safetensors", "not a model")), ("tiny.safetensors",)),
    Case("single .ckpt malicious", lambda c: c.argv(model=bad.malicious_pickle(c.tmp / "tiny.ckpt", c.tmp / bad.PWNED)), ("tiny.ckpt", "refused")),
    Case("single .ckpt truncated", lambda c: c.argv(model=bad.cut_in_half(_ckpt(c))), ("tiny.ckpt",)),
    Case("vae file cut in half", lambda c: c.argv(f"--vae={bad.cut_in_half(_single(c))}"), ("--vae", "cut short")),
    Case("vae folder cut in half", lambda c: c.argv(f"--vae={_damaged_model(c, 'vae/diffusion_pytorch_model.safetensors', bad.cut_in_half)}/vae"),
         ("--vae", "cut short")),
    Case("vae malicious .ckpt", lambda c: c.argv(f"--vae={bad.malicious_pickle(c.tmp / 'vae.ckpt', c.tmp / bad.PWNED)}"), ("--vae", "refused")),
    Case("vae not a VAE folder", lambda c: c.argv(f"--vae={c.tmp}"), ("--vae",)),
]

# ---- embeddings given as starting vectors, and state folders given to --resume
EMBEDDING_CASES = [
    Case("weights hold NaN", lambda c: c.argv(f"--weights={_weights(c, float('nan'))}"), ("--weights", "NaN")),
    Case("weights hold Inf", lambda c: c.argv(f"--weights={_weights(c, float('inf'))}"), ("--weights", "Inf")),
    Case("weights wrong vector count", lambda c: c.argv(f"--weights={_weights(c, 0.0, (3, 32))}"), ("--weights", "--num_vectors_per_token")),
    Case("weights wrong width", lambda c: c.argv(f"--weights={_weights(c, 0.0, (2, 48))}"), ("--weights",)),
    Case("weights malicious .pt", lambda c: c.argv(f"--weights={bad.malicious_pickle(c.tmp / 'start.pt', c.tmp / bad.PWNED)}"), ("start.pt", "refused")),
    Case("weights truncated", lambda c: c.argv(f"--weights={bad.cut_in_half(bad.non_finite_embedding(c.tmp / 'start.safetensors', 0.0))}"), ("start.safetensors",)),
    Case("weights empty file", lambda c: c.argv(f"--weights={c.write('start.safetensors', b'')}"), ("start.safetensors",)),
    Case("resume state missing optimizer.pt", lambda c: c.argv(f"--resume={_state(c, optimizer_pt=_rm)}"), ("--resume", "optimizer.pt")),
    Case("resume optimizer.pt malicious", lambda c: c.argv(f"--resume={_state(c, optimizer_pt=lambda p: bad.malicious_pickle(p, c.tmp / bad.PWNED))}"),
         ("optimizer.pt", "refused")),
    Case("resume optimizer.pt truncated", lambda c: c.argv(f"--resume={_state(c, optimizer_pt=bad.cut_in_half)}"), ("optimizer.pt",)),
    Case("resume progress.json garbage", lambda c: c.argv(f"--resume={_state(c, progress_json=lambda p: p.write_text('[1'))}"), ("--resume",)),
    Case("resume progress.json unknown key", lambda c: c.argv("--resume=" + _state(c, progress_json=lambda p: p.write_text('{"x": 1}'))), ("--resume",)),
    Case("resume vectors truncated", lambda c: c.argv(f"--resume={_state(c, vectors_st=bad.cut_in_half)}"), ("--resume",)),
    Case("resume vectors NaN", lambda c: c.argv(f"--resume={_state(c, vectors_st=lambda p: save_file({'emb_params': torch.full((2, 32), float('nan'))}, str(p)))}"),
         ("--resume", "NaN")),
]


def _load(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _single(ctx, suffix: str = ".safetensors"):
    from library.models.original_format import save_single_file
    from library.models.tiny import build_tiny_components

    return save_single_file(build_tiny_components("sd1"), ctx.tmp / f"tiny{suffix}", prediction_type="epsilon")


def _ckpt(ctx):
    return _single(ctx, ".ckpt")


ALL_CASES = FLAG_CASES + CONFIG_CASES + IMAGE_CASES + MODEL_CASES + EMBEDDING_CASES
