#!/usr/bin/env python
"""Full-size SD 1.5 / 2.1 / 2.1-v / SDXL architectures with random weights, made offline (for benchmarks).

The architectures come from the shipped configs (library/resources/model_configs) and the bundled tokenizers;
nothing is downloaded. Weights are built on the meta device, materialised in the target dtype and filled with
normal(0, 0.02) (norm scales 1, biases 0): finite and sane in scale, so a training step costs exactly what it
costs on a real model. Memory stays near one copy of the model in the target dtype.

    python tools/make_random_model.py --arch sd15 --out /tmp/sd15_random
    python tools/make_random_model.py --arch sdxl --out /tmp/sdxl_random.safetensors --single_file --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from library.cli import run_main  # noqa: E402

ARCHES = {
    # arch: (family, v_parameterization, tokenizer styles)
    "sd15": ("sd1", False, ("sd1",)),
    "sd21": ("sd2", False, ("sd2",)),
    "sd21v": ("sd2", True, ("sd2",)),
    "sdxl": ("sdxl", False, ("sd1", "sd2")),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--arch", required=True, choices=sorted(ARCHES), help="architecture to build")
    parser.add_argument("--out", required=True, help="diffusers directory to write, or a .safetensors file with --single_file")
    parser.add_argument("--single_file", action="store_true", help="write one original-format (LDM) .safetensors file")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="dtype of the stored weights")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@torch.no_grad()
def random_init_(module: torch.nn.Module, generator: torch.Generator, std: float = 0.02) -> None:
    """Fill every parameter of a materialised (to_empty) module: normal(0, std), norm scales 1, biases 0."""
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            if name == "bias" or "bias" in name:
                param.zero_()
            elif isinstance(sub, norms) or (param.ndim == 1 and "norm" in type(sub).__name__.lower()):
                param.fill_(1.0)
            elif param.ndim == 1:
                param.zero_()
            else:
                # draw in fp32 chunks (a generator cannot fill bf16/fp16 directly), copy into the parameter
                flat = param.view(-1)
                for start in range(0, flat.numel(), 1 << 24):
                    part = flat[start : start + (1 << 24)]
                    part.copy_(torch.empty(part.numel(), dtype=torch.float32).normal_(0.0, std, generator=generator))


def _materialise(model: torch.nn.Module, dtype: torch.dtype, generator: torch.Generator) -> torch.nn.Module:
    """A meta-device model as real CPU tensors in `dtype`, randomly initialised; buffers rebuilt."""
    buffers = {name: (buf.shape, buf.dtype) for name, buf in model.named_buffers()}
    model = model.to(dtype).to_empty(device="cpu")
    random_init_(model, generator)
    for name, (shape, buf_dtype) in buffers.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        if leaf == "position_ids":  # CLIP's (1, max_positions) arange
            value = torch.arange(shape[-1]).expand(shape).to(buf_dtype)
        else:
            raise RuntimeError(f"make_random_model: no rule to initialise buffer {name}")
        owner.register_buffer(leaf, value.clone(), persistent=False)
    return model.eval().requires_grad_(False)


def build_components(arch: str, dtype: torch.dtype, seed: int = 0) -> dict:
    """Components keyed as diffusers pipelines name them, random weights in `dtype`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from library.models.loading import bundled_config_dir
    from library.tokenizers import load_bundled_tokenizer

    family, v, tokenizer_styles = ARCHES[arch]
    config_dir = bundled_config_dir(family, v)
    generator = torch.Generator().manual_seed(seed)
    parts: dict = {}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config_dir / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir / "vae")))
        encoders = [CLIPTextModel(CLIPTextConfig.from_pretrained(str(config_dir / "text_encoder")))]
        if family == "sdxl":
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(config_dir / "text_encoder_2"))))
    parts["unet"] = _materialise(unet, dtype, generator)
    parts["vae"] = _materialise(vae, dtype, generator)
    for i, encoder in enumerate(encoders):
        parts["text_encoder" if i == 0 else "text_encoder_2"] = _materialise(encoder, dtype, generator)
    for i, style in enumerate(tokenizer_styles):
        parts["tokenizer" if i == 0 else "tokenizer_2"] = load_bundled_tokenizer(style)
    return parts


def write_diffusers_dir(parts: dict, arch: str, out: Path) -> Path:
    from library.atomic import atomic_dir
    from library.models.loading import bundled_config_dir

    family, v, _ = ARCHES[arch]
    config_dir = bundled_config_dir(family, v)
    with atomic_dir(out) as tmp:
        shutil.copy(config_dir / "model_index.json", tmp / "model_index.json")
        shutil.copytree(config_dir / "scheduler", tmp / "scheduler")
        for name, part in parts.items():
            part.save_pretrained(str(tmp / name))
    return out


def write_single_file(parts: dict, arch: str, out: Path) -> Path:
    from library.models.original_format import save_single_file

    family, v, _ = ARCHES[arch]
    components = {k: p for k, p in parts.items() if not k.startswith("tokenizer")}
    return save_single_file(components, out, family=family, prediction_type="v_prediction" if v else "epsilon")


def make_random_model(arch: str, out: str | Path, *, single_file: bool = False, dtype: str = "fp32", seed: int = 0) -> Path:
    """Build and write one random model; returns its path."""
    out = Path(out)
    parts = build_components(arch, DTYPES[dtype], seed)
    if single_file:
        if out.suffix not in (".safetensors", ".ckpt"):
            out = out.with_suffix(".safetensors")
        return write_single_file(parts, arch, out)
    return write_diffusers_dir(parts, arch, out)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    path = make_random_model(args.arch, args.out, single_file=args.single_file, dtype=args.dtype, seed=args.seed)
    print(json.dumps({"arch": args.arch, "path": str(path), "dtype": args.dtype, "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    sys.exit(run_main(main))
