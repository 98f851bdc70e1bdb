#!/usr/bin/env python
"""Generate images with Stable Diffusion 1.x / 2.x / SDXL and textual-inversion embeddings.

    python gen_img.py --ckpt model.safetensors --textual_inversion_embeddings mychar4.safetensors \
        --prompt "a photo of mychar4, (red hat:1.2) --n blurry --d 42" --outdir out --steps 28 --sampler euler_a

Flags and prompt options follow kohya-ss/sd-scripts' gen_img.py; see docs/gen_img.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from library.cli import add_logging_arguments, configure_console_logging, run_main
from library.errors import UserError

logger = logging.getLogger("gen_img")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def setup_parser() -> argparse.ArgumentParser:
    from library.sampling.samplers import SAMPLER_NAMES

    parser = argparse.ArgumentParser(prog="gen_img.py", description=(__doc__ or "").splitlines()[0])
    model = parser.add_argument_group("model")
    model.add_argument("--ckpt", "--pretrained_model_name_or_path", dest="ckpt", type=str, default=None,
                       help="model: diffusers folder, .safetensors/.ckpt file, or Hugging Face hub id")
    model.add_argument("--sdxl", action="store_true", help="the model is SDXL (detected when omitted)")
    model.add_argument("--v1", action="store_true", help="the model is SD 1.x (detected when omitted)")
    model.add_argument("--v2", action="store_true", help="the model is SD 2.x (detected when omitted)")
    model.add_argument("--v_parameterization", action="store_true", help="the model predicts v (SD 2.x 768-v; detected when omitted)")
    model.add_argument("--vae", type=str, default=None, help="a VAE (file, diffusers folder or hub id) replacing the model's")
    model.add_argument("--no_half_vae", action="store_true", help="keep the VAE in fp32 with --fp16/--bf16 (avoids SDXL VAE NaNs)")
    model.add_argument("--tokenizer_cache_dir", type=str, default=None, help="folder to cache tokenizers in (offline use)")
    model.add_argument("--textual_inversion_embeddings", type=str, nargs="*", default=None, metavar="FILE",
                       help="embedding files; each file's name (without extension) is its trigger word")

    prompts = parser.add_argument_group("prompts")
    prompts.add_argument("--prompt", type=str, default=None, help="one prompt, with optional --n/--w/--h/--s/--d/--l options")
    prompts.add_argument("--from_file", type=str, default=None, help="prompt file: one prompt a line (.txt), or .toml/.json")
    prompts.add_argument("--interactive", action="store_true", help="read prompts from standard input, one a line")
    prompts.add_argument("--clip_skip", type=int, default=None,
                         help="use the N-th layer from the end of CLIP (default 1 for SD 1.x/2.x, 2 for SDXL)")
    prompts.add_argument("--max_embeddings_multiples", type=int, default=3,
                         help="longest prompt, in 75-token chunks (default 3 = 225 tokens; sd-scripts' gen_img defaults to 1)")

    output = parser.add_argument_group("images")
    output.add_argument("--outdir", type=str, default="outputs", help="folder for the images (default: outputs)")
    output.add_argument("--sequential_file_name", action="store_true", help="name images im_000001.png, im_000002.png, ...")
    output.add_argument("--images_per_prompt", type=int, default=1, help="images per prompt (default 1)")
    output.add_argument("--n_iter", type=int, default=1, help="repeat the whole prompt list this many times (default 1)")
    output.add_argument("--batch_size", type=int, default=1, help="images per pipeline call (default 1)")
    output.add_argument("--H", type=int, default=None, help="height in pixels (default 512; SDXL 1024)")
    output.add_argument("--W", type=int, default=None, help="width in pixels (default 512; SDXL 1024)")
    output.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    output.add_argument("--sampler", type=str, default="ddim", metavar="NAME",
                        help=f"sampler (default ddim): {', '.join(SAMPLER_NAMES)}")
    output.add_argument("--scale", type=float, default=7.5, help="CFG (guidance) scale (default 7.5)")
    output.add_argument("--negative_scale", type=float, default=None,
                        help="a separate guidance scale for the negative prompt (uncond = the empty prompt)")
    output.add_argument("--seed", type=int, default=None,
                        help="seed of a single image, or the seed that draws every image's seed (reproducible runs)")
    output.add_argument("--iter_same_seed", action="store_true",
                        help="without per-prompt seeds, use one seed for all prompts of an iteration")

    img2img = parser.add_argument_group("img2img and inpainting")
    img2img.add_argument("--image_path", type=str, default=None, help="image, or folder of images, to start from (img2img)")
    img2img.add_argument("--mask_path", type=str, default=None, help="mask image or folder (white = repaint) for inpainting")
    img2img.add_argument("--strength", type=float, default=None, help="img2img/inpainting strength, 0-1 (default 0.8)")

    sdxl = parser.add_argument_group("SDXL size conditioning")
    sdxl.add_argument("--original_height", type=int, default=None, help="SDXL original height (default: image height)")
    sdxl.add_argument("--original_width", type=int, default=None, help="SDXL original width (default: image width)")
    sdxl.add_argument("--original_height_negative", type=int, default=None, help="SDXL original height for the negative prompt")
    sdxl.add_argument("--original_width_negative", type=int, default=None, help="SDXL original width for the negative prompt")
    sdxl.add_argument("--crop_top", type=int, default=None, help="SDXL crop top (default 0)")
    sdxl.add_argument("--crop_left", type=int, default=None, help="SDXL crop left (default 0)")

    speed = parser.add_argument_group("precision and attention")
    speed.add_argument("--fp16", action="store_true", help="run in float16 (CUDA only)")
    speed.add_argument("--bf16", action="store_true", help="run in bfloat16")
    speed.add_argument("--xformers", action="store_true", help="use xformers attention (needs the xformers package and CUDA)")
    speed.add_argument("--sdpa", action="store_true", help="use PyTorch's scaled-dot-product attention (the default in PyTorch 2)")
    add_logging_arguments(parser)  # sd-scripts' --console_log_level / --console_log_file / --console_log_simple
    return parser


def validate(args: argparse.Namespace) -> None:
    """Reject bad flag values and combinations before any model is loaded."""
    from library.sampling.samplers import check_sampler

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
    args.sampler = check_sampler(args.sampler)
    for path in args.textual_inversion_embeddings or []:
        if not Path(path).is_file():
            raise UserError(f"--textual_inversion_embeddings {path}: no such file")


def pick_device_and_dtype(args: argparse.Namespace):
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.fp16 and device.type == "cpu":
        raise UserError("--fp16 needs a CUDA GPU: half-precision convolutions are not supported on the CPU; "
                        "use --bf16 or leave both out (fp32)")
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


def load_images(path: str, flag: str) -> list:
    """One image, or every image of a folder in name order (RGB; their PNG text chunks kept in `.info`)."""
    from PIL import Image

    source = Path(path)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.is_file():
        files = [source]
    else:
        raise UserError(f"{flag} {path}: no such file or folder")
    if not files:
        raise UserError(f"{flag} {path}: the folder has no .png/.jpg/.jpeg/.webp images")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                rgb = image.convert("RGB")
                rgb.info.update(getattr(image, "text", {}) or {})
                rgb.filename = str(file)
                images.append(rgb)
        except OSError as err:
            raise UserError(f"{flag}: cannot read image {file}: {err}") from None
    return images


def prompts_from_images(init_images: list, mask_images: list, images_per_prompt: int):
    """sd-scripts' img2img without a prompt: each image's own prompt from its metadata, one prompt per image.

    The images (and masks) are repeated `images_per_prompt` times so that image i goes with prompt i.
    """
    from library.sampling.png_info import PARAMETERS_KEY, parse_parameters
    from library.sampling.prompt_options import PromptSpec

    specs = []
    for image in init_images:
        info = image.info
        if "prompt" in info:  # sd-scripts' own keys
            prompt, negative = info["prompt"], info.get("negative-prompt")
        elif PARAMETERS_KEY in info:  # AUTOMATIC1111's
            parsed = parse_parameters(info[PARAMETERS_KEY])
            prompt, negative = parsed["prompt"], parsed["negative_prompt"] or None
        else:
            raise UserError(f"--image_path: {image.filename} has no prompt in its metadata; "
                            "give --prompt or --from_file")
        specs.append(PromptSpec(prompt, negative, source="--image_path metadata"))
    repeat = lambda images: [im for im in images for _ in range(images_per_prompt)]  # noqa: E731
    return specs, repeat(init_images), repeat(mask_images)


def set_attention(unet, vae, args: argparse.Namespace) -> None:
    if args.xformers:
        unet.enable_xformers_memory_efficient_attention()
        vae.enable_xformers_memory_efficient_attention()
    elif args.sdpa:
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet.set_attn_processor(AttnProcessor2_0())


def make_defaults(args: argparse.Namespace, family: str, init_images: list):
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
        crop_top=args.crop_top or 0, crop_left=args.crop_left or 0,
    )


class ImageWriter:
    """Saves images under sd-scripts' names with A1111 metadata."""

    def __init__(self, args: argparse.Namespace, model, clip_skip, ti_hashes: dict[str, str], img2img: bool):
        from library.sampling.saving import next_sequential_number

        self.outdir = Path(args.outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.sequential = args.sequential_file_name
        self.number = next_sequential_number(self.outdir) if self.sequential else 0
        self.family = model.family
        self.model_name = Path(str(model.source).rstrip("/\\")).stem or str(model.source)
        self.clip_skip = clip_skip
        self.ti_hashes = ti_hashes
        self.img2img = img2img

    def save(self, image, job) -> Path:
        from library.sampling.saving import gen_img_filename, image_parameters, save_png, sequential_filename, timestamp

        if self.sequential:
            name = sequential_filename(self.number)
            self.number += 1
        else:
            name = gen_img_filename(job, timestamp())
        parameters, extra = image_parameters(job, family=self.family, model_name=self.model_name,
                                             clip_skip=self.clip_skip, ti_hashes=self.ti_hashes, img2img=self.img2img)
        return save_png(image, self.outdir / name, parameters, extra)


def describe(num_images: int | None, specs: list, defaults, args: argparse.Namespace, family: str, mode: str) -> str:
    """The one-line summary printed before generating."""
    what = (f"{num_images} image(s): {len(specs)} prompt(s) x {args.images_per_prompt} per prompt x {args.n_iter} iteration(s)"
            if num_images is not None else "images from prompts typed on standard input")
    return (f"generating {what}; {family}, {mode}, default size {defaults.width}x{defaults.height}, {defaults.steps} steps, "
            f"sampler {defaults.sampler}, CFG {defaults.scale}, batch {args.batch_size}"
            + (f", seed {args.seed}" if args.seed is not None else "") + f"; into {args.outdir}")


def main(argv: list[str] | None = None) -> None:
    args = setup_parser().parse_args(argv)
    configure_console_logging(args)
    validate(args)

    from library.sampling.prompt_options import parse_prompt_file, parse_prompt_line

    # prompts, images and devices first: their errors come before the (slow) model load
    device, dtype = pick_device_and_dtype(args)
    specs = []
    if args.from_file:
        specs = parse_prompt_file(args.from_file, strict=True)
        if not specs:
            raise UserError(f"--from_file {args.from_file}: no prompts in the file (only blank or # lines)")
    elif args.prompt is not None:
        specs = [parse_prompt_line(args.prompt, source="--prompt", strict=True)]
    init_images = load_images(args.image_path, "--image_path") if args.image_path else []
    mask_images = load_images(args.mask_path, "--mask_path") if args.mask_path else []
    if init_images and not specs and not args.interactive:
        specs, init_images, mask_images = prompts_from_images(init_images, mask_images, args.images_per_prompt)

    model = load_model(args, dtype)
    generate(args, model, specs, init_images, mask_images, device)


def generate(args, model, specs, init_images, mask_images, device) -> None:
    import torch
    from tqdm import tqdm

    from library.sampling.generate import ImageRenderer, SeedSource, plan_images
    from library.sampling.png_info import file_short_hash

    for module in (model.unet, model.vae, *model.text_encoders):
        module.to(device)
    set_attention(model.unet, model.vae, args)

    rewrite, ti_hashes = None, {}
    if args.textual_inversion_embeddings:
        from library.embeddings import load_embeddings_into, make_prompt_rewriter

        mapping = load_embeddings_into(model.tokenizers, model.text_encoders, model.family, args.textual_inversion_embeddings)
        rewrite = make_prompt_rewriter(mapping)
        ti_hashes = {trigger: file_short_hash(path) for trigger, path in zip(mapping, args.textual_inversion_embeddings)}
        for module in model.text_encoders:  # the new vectors were created on the CPU in fp32
            module.to(device)
        logger.info("embeddings: %s", ", ".join(f"{t} ({len(n)} vector(s))" for t, n in mapping.items()))

    defaults = make_defaults(args, model.family, init_images)
    renderer = ImageRenderer(model, clip_skip=args.clip_skip, max_embeddings_multiples=args.max_embeddings_multiples,
                             prompt_rewrite=rewrite, init_images=init_images, mask_images=mask_images)
    writer = ImageWriter(args, model, args.clip_skip, ti_hashes, img2img=bool(init_images))
    n_iter = 1 if args.interactive else args.n_iter  # as sd-scripts: interactive mode runs each prompt once
    single = len(specs) == 1 and args.images_per_prompt == 1
    seeds = SeedSource(args.seed, single_image=single, iter_same_seed=args.iter_same_seed)

    if args.interactive:
        logger.info(describe(None, specs, defaults, args, model.family, renderer.kind))
        count = 0
        for line_no, spec in read_interactive(sys.stdin):
            jobs = plan_images([spec], defaults, images_per_prompt=args.images_per_prompt, seeds=seeds, start_index=count)
            with torch.inference_mode():
                for job, image in renderer.render(jobs, args.batch_size):
                    path = writer.save(image, job)
                    logger.info("line %d: seed %d -> %s", line_no, job.seed, path)
            count += len(jobs)
        renderer.warn_truncated()
        logger.info("done: %d image(s) in %s", count, args.outdir)
        return

    jobs = plan_images(specs, defaults, images_per_prompt=args.images_per_prompt, n_iter=n_iter, seeds=seeds)
    logger.info(describe(len(jobs), specs, defaults, args, model.family, renderer.kind))
    with torch.inference_mode(), tqdm(total=len(jobs), unit="image", disable=None) as progress:
        for job, image in renderer.render(jobs, args.batch_size):
            writer.save(image, job)
            progress.update(1)
    renderer.warn_truncated()
    logger.info("done: %d image(s) in %s", len(jobs), args.outdir)


def read_interactive(stream):
    """(line number, PromptSpec) for each prompt typed; a bad line is reported and skipped."""
    from library.sampling.prompt_options import parse_prompt_line

    if stream.isatty():
        print("Type a prompt and press Enter (options --n --w --h --s --d --l ...); Ctrl-D to finish.", file=sys.stderr)
    for line_no, line in enumerate(stream, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            spec = parse_prompt_line(text, line_no, source="stdin", strict=True)
        except UserError as err:
            logger.error("%s", err)
            continue
        if not spec.prompt:
            logger.error("stdin line %d: options but no prompt text", line_no)
            continue
        yield line_no, spec


if __name__ == "__main__":
    sys.exit(run_main(main))
