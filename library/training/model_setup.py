"""Loading the frozen model for training and preparing it: initial vectors, attention, checkpointing."""

from __future__ import annotations

import argparse
import logging

import torch

from library.errors import UserError

logger = logging.getLogger(__name__)


def load_models_for(args: argparse.Namespace, *, sdxl: bool):
    """Load the base model named by the flags; the SD script refuses SDXL models and vice versa."""
    from library.models.loading import load_models

    from library.training.family import family_for, family_for_script
    from library.training.run_setup import weight_dtype_for

    expected = family_for_script(sdxl)

    # frozen weights load straight into the mixed-precision dtype: no full fp32 copy in memory first
    # (--no_half_vae keeps an fp32 load so the VAE is not rounded through the half dtype)
    dtype = torch.float32 if args.no_half_vae else weight_dtype_for(args)
    models = load_models(
        args.pretrained_model_name_or_path,
        dtype=dtype,
        v2=args.v2 or None,
        v_parameterization=args.v_parameterization or None,
        sdxl=expected.load_as_sdxl,
        vae=args.vae,
        tokenizer_cache_dir=args.tokenizer_cache_dir,
        disable_mmap=getattr(args, "disable_mmap_load_safetensors", False),
    )
    found = family_for(models.family)
    if found.script != expected.script:
        raise UserError(f"{args.pretrained_model_name_or_path} is an {found.display_name} model, not {expected.kind}: train it with {found.script}")
    return models


def read_initial_vectors(path: str, slots: tuple[str, ...], models, num_vectors: int) -> dict[str, torch.Tensor]:
    """Vectors from an existing embedding file (--weights), checked against the model and --num_vectors_per_token."""
    from library.embeddings import read_embedding

    emb = read_embedding(path)
    dims = {slot: enc.get_input_embeddings().embedding_dim for slot, enc in zip(slots, models.text_encoders)}
    vectors = emb.vectors_for_slots(slots, dims, source=f"--weights {path}")
    for slot, tensor in vectors.items():
        bad = (~torch.isfinite(tensor)).sum().item()
        if bad:  # a NaN start makes the loss NaN at step 1 and every later save worthless
            kinds = "/".join(k for k, found in (("NaN", tensor.isnan().any()), ("Inf", tensor.isinf().any())) if found)
            raise UserError(f"--weights {path}: {bad} value(s) of its {slot} vectors are {kinds}; it cannot be a starting point. "
                            "Start from --init_word, or from an earlier, finite save")
        if tensor.shape[0] != num_vectors:
            raise UserError(
                f"--weights {path} holds {tensor.shape[0]} vector(s) but --num_vectors_per_token is {num_vectors}; "
                f"pass --num_vectors_per_token {tensor.shape[0]} to continue training it"
            )
    return vectors


def enable_gradient_checkpointing(models) -> None:
    """Trade compute for activation memory in the UNet and the text encoders."""
    models.unet.enable_gradient_checkpointing()
    for encoder in models.text_encoders:
        encoder.gradient_checkpointing_enable()


def set_attention(args: argparse.Namespace, unet) -> None:
    """--xformers / --mem_eff_attn / --sdpa, by the setter gen_img.py shares."""
    from library.models.attention import set_attention as set_unet_attention

    set_unet_attention(unet, xformers=args.xformers, sdpa=getattr(args, "sdpa", False), mem_eff_attn=args.mem_eff_attn)


def compile_unet(args: argparse.Namespace, unet) -> None:
    """--torch_compile: compile the U-Net in place (`Module.compile`), so pipelines and hooks still see a UNet.

    Static shapes: each bucket shape compiles once (minutes on a CPU). Dynamo's default would switch to a dynamic-shape
    graph at the second shape, which inductor (torch 2.13, CPU) fails to build for the UNet ("cannot determine truth
    value of Relational"). Past dynamo's cache limit (8 shapes) further shapes run uncompiled.
    """
    if args.dynamo_backend == "inductor" and unet.device.type == "cpu" and not _has_cxx_compiler():
        raise UserError("--torch_compile with --dynamo_backend inductor on a CPU needs a C++ compiler (g++ or clang++) on PATH; "
                        "install one, or drop --torch_compile")
    unet.compile(backend=args.dynamo_backend, dynamic=False)


def _has_cxx_compiler() -> bool:
    import shutil

    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))

