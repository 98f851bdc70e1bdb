"""gen_img.py's run, step by step: check the flags, load the model and embeddings, plan, render and write images.

gen_img.py holds only the parser; everything it does is here, in the order it happens, so that the entry point
reads like the trainer's: parse, check (before any model is loaded), load, generate.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from library.errors import UserError

logger = logging.getLogger("gen_img")


def check_flags(args: argparse.Namespace) -> None:
    """Reject bad flag values and combinations before any model is loaded."""
    from library.sampling.gen_img_arguments import check_feature_flags, raise_problems
    from library.sampling.samplers import check_sampler

    args.sampler = check_sampler(args.sampler)
    raise_problems(check_feature_flags(args))
    if not args.ckpt:
        raise UserError("--ckpt is required: a diffusers folder, a .safetensors/.ckpt file or a hub id")
    sources = [flag for flag, given in (("--prompt", args.prompt is not None), ("--from_file", args.from_file),
                                        ("--interactive", args.interactive)) if given]
    if len(sources) > 1:
        raise UserError(f"give only one of {', '.join(sources)}")
    if not sources and not args.image_path:
        raise UserError("nothing to generate: give --prompt TEXT, --from_file FILE or --interactive "
                        "(or --image_path with images that carry their prompt in their metadata)")
    if sum([args.sdxl, args.v1, args.v2]) > 1:
        raise UserError("give at most one of --sdxl, --v1, --v2")
    if args.fp16 and args.bf16:
        raise UserError("give --fp16 or --bf16, not both")
    if args.xformers and args.sdpa:
        raise UserError("give --xformers or --sdpa, not both")
    for flag in ("images_per_prompt", "n_iter", "batch_size", "max_embeddings_multiples"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if not 1 <= args.steps <= 1000:
        raise UserError(f"--steps must be between 1 and 1000, got {args.steps}")
    for flag in ("H", "W"):
        value = getattr(args, flag)
        if value is not None and value < 64:
            raise UserError(f"--{flag} must be at least 64 pixels, got {value}")
    if args.clip_skip is not None and args.clip_skip < 1:
        raise UserError(f"--clip_skip must be at least 1, got {args.clip_skip}")
    if args.strength is not None and not 0 < args.strength <= 1:
        raise UserError(f"--strength must be in (0, 1], got {args.strength}")
    if args.mask_path and not args.image_path:
        raise UserError("--mask_path needs --image_path: inpainting repaints part of an image")
    if args.negative_scale is not None and args.scale <= 1:
        raise UserError(f"--negative_scale needs --scale above 1 (got {args.scale})")
    for path in args.textual_inversion_embeddings or []:
        if not Path(path).exists():
            raise UserError(f"--textual_inversion_embeddings {path}: no such file or folder")


def pick_device_and_dtype(args: argparse.Namespace):
    """The GPU when there is one, else the CPU; the dtype of --fp16/--bf16 (fp32 without).

    fp16 runs on the CPU too (PyTorch 2.x has fp16 convolutions there); it is slower than fp32 on most CPUs.
    """
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.xformers:
        from library.optional_deps import require

        require("xformers", "--xformers")
        if device.type != "cuda":
            raise UserError("--xformers needs a CUDA GPU; on the CPU leave it out (PyTorch's SDPA is used)")
    dtype = torch.float16 if args.fp16 else torch.bfloat16 if args.bf16 else torch.float32
    return device, dtype


def load_model(args: argparse.Namespace, dtype):
    """The model as a SamplingModel (library.models.loading.LoadedModels has the same fields)."""
    import torch

    from library.models.loading import load_models

    v2 = True if args.v2 else (False if (args.v1 or args.sdxl) else None)
    sdxl = True if args.sdxl else (False if (args.v1 or args.v2) else None)
    try:
        loaded = load_models(args.ckpt, v2=v2, sdxl=sdxl, v_parameterization=True if args.v_parameterization else None,
                             vae=args.vae, tokenizer_cache_dir=args.tokenizer_cache_dir, dtype=dtype)
    except UserError as err:
        # the loader names the trainer's flag; here the user typed --ckpt
        raise UserError(str(err).replace("--pretrained_model_name_or_path", "--ckpt")) from None
    if args.no_half_vae:
        loaded.vae.to(torch.float32)
    return loaded


def make_defaults(args: argparse.Namespace, family: str, init_images: list, features: dict | None = None):
    """The settings of prompts that do not give their own: flags, else sd-scripts' defaults for the family.

    `features` holds the Deep Shrink / Gradual Latent defaults (gen_img_arguments.render_settings).
    """
    from library.sampling.generate import GenerationDefaults, round_size

    size = 1024 if family == "sdxl" else 512
    width, height = args.W or size, args.H or size
    if init_images and (args.W is None or args.H is None):
        # img2img without --W/--H: the (first) image's own size, rounded down to a multiple of 8
        width, height = (round_size(v) for v in init_images[0].size)
    return GenerationDefaults(
        width=width, height=height, steps=args.steps, scale=args.scale, sampler=args.sampler,
        negative_scale=args.negative_scale, strength=0.8 if args.strength is None else args.strength,
        original_width=args.original_width, original_height=args.original_height,
        original_width_negative=args.original_width_negative, original_height_negative=args.original_height_negative,
        crop_top=args.crop_top or 0, crop_left=args.crop_left or 0, **(features or {}),
    )


def describe(num_images: int | None, specs: list, defaults, args: argparse.Namespace, family: str, mode: str) -> str:
    """The one-line summary printed before generating."""
    what = (f"{num_images} image(s): {len(specs)} prompt(s) x {args.images_per_prompt} per prompt x {args.n_iter} iteration(s)"
            if num_images is not None else "images from prompts typed on standard input")
    return (f"generating {what}; {family}, {mode}, default size {defaults.width}x{defaults.height}, {defaults.steps} steps, "
            f"sampler {defaults.sampler}, CFG {defaults.scale}, batch {args.batch_size}"
            + (f", seed {args.seed}" if args.seed is not None else "") + f"; into {args.outdir}")


def load_embeddings(paths: list, model, device):
    """Embedding files into the model: (prompt rewriter or None, trigger -> A1111 hash, trigger -> token names)."""
    if not paths:
        return None, {}, {}
    from library.embeddings import load_embeddings_into, make_prompt_rewriter
    from library.sampling.png_info import file_short_hash

    mapping = load_embeddings_into(model.tokenizers, model.text_encoders, model.family, paths)
    ti_hashes = {trigger: file_short_hash(path) for trigger, path in zip(mapping, paths)}
    for module in model.text_encoders:  # the new vectors were created on the CPU in fp32
        module.to(device)
    logger.info("embeddings loaded, trigger words: %s", ", ".join(f"{t} ({len(n)} vector(s))" for t, n in mapping.items()))
    return make_prompt_rewriter(mapping), ti_hashes, mapping


def generate(args: argparse.Namespace, model, specs: list, init_images: list, mask_images: list, device,
             embeddings: list | None = None) -> None:
    """Render and write every image the flags and prompts ask for."""
    import torch
    from tqdm import tqdm

    import random

    from library.models.attention import set_attention
    from library.sampling.deep_shrink import check_depths
    from library.sampling.gen_img_arguments import prepare_modules, render_settings
    from library.sampling.generate import ImageRenderer, SeedSource, plan_images
    from library.sampling.inputs import read_interactive
    from library.sampling.triggers import warn_prompts_without_triggers
    from library.sampling.writer import ImageWriter

    for module in (model.unet, model.vae, *model.text_encoders):
        module.to(device)
    set_attention(model.unet, xformers=args.xformers, sdpa=args.sdpa, vae=model.vae)
    rewrite, ti_hashes, triggers = load_embeddings(embeddings or [], model, device)
    warn_prompts_without_triggers(specs, triggers)

    options, features = render_settings(args)
    defaults = make_defaults(args, model.family, init_images, features)
    if defaults.deep_shrink is not None:
        check_depths(model.unet, defaults.deep_shrink)
    prepare_modules(args, model, defaults.height)
    writer = ImageWriter(args.outdir, family=model.family, model_source=model.source, clip_skip=args.clip_skip,
                         ti_hashes=ti_hashes, img2img=bool(init_images), sequential=args.sequential_file_name,
                         staged=options.highres is not None)
    stage = "1" if options.highres is not None else ""

    def save(image, job, stage=stage):
        original = None
        if args.use_original_file_name and init_images:
            original = init_images[job.index % len(init_images)].filename
        return writer.save(image, job, stage=stage, original_name=original)

    renderer = ImageRenderer(model, clip_skip=args.clip_skip, max_embeddings_multiples=args.max_embeddings_multiples,
                             prompt_rewrite=rewrite, init_images=init_images, mask_images=mask_images, options=options,
                             on_first_stage=lambda job, image: save(image, job, stage="0"))
    n_iter = 1 if args.interactive else args.n_iter  # as sd-scripts: interactive mode runs each prompt once
    single = len(specs) == 1 and args.images_per_prompt == 1
    seeds = SeedSource(args.seed, single_image=single, iter_same_seed=args.iter_same_seed)
    shuffle = random.Random(args.seed) if args.shuffle_prompts else None

    if args.interactive:
        logger.info(describe(None, specs, defaults, args, model.family, renderer.kind))
        count = 0
        for line_no, spec in read_interactive(sys.stdin):
            warn_prompts_without_triggers([spec], triggers)
            jobs = plan_images([spec], defaults, images_per_prompt=args.images_per_prompt, seeds=seeds, start_index=count)
            with torch.inference_mode():
                for job, image in renderer.render(jobs, args.batch_size):
                    path = save(image, job)
                    logger.info("line %d: seed %d -> %s", line_no, job.seed, path)
            count += len(jobs)
        renderer.warn_truncated()
        logger.info("done: %d image(s) in %s", count, args.outdir)
        return

    jobs = plan_images(specs, defaults, images_per_prompt=args.images_per_prompt, n_iter=n_iter, seeds=seeds,
                       shuffle=shuffle)
    logger.info(describe(len(jobs), specs, defaults, args, model.family, renderer.kind))
    with torch.inference_mode(), tqdm(total=len(jobs), unit="image", disable=None) as progress:
        for job, image in renderer.render(jobs, args.batch_size):
            save(image, job)
            progress.update(1)
    renderer.warn_truncated()
    logger.info("done: %d image(s) in %s", len(jobs), args.outdir)
