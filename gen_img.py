#!/usr/bin/env python
"""Generate images with Stable Diffusion 1.x / 2.x / SDXL and textual-inversion embeddings.

    python gen_img.py --ckpt model.safetensors --textual_inversion_embeddings mychar4.safetensors \
        --prompt "a photo of mychar4, (red hat:1.2) --n blurry --d 42" --outdir out --steps 28 --sampler euler_a

Flags and prompt options follow kohya-ss/sd-scripts' gen_img.py; see docs/gen_img.md.
"""

from __future__ import annotations

import argparse
import sys

from library.cli import add_logging_arguments, configure_console_logging, run_main
from library.sampling import gen_img_run as run
from library.sampling import inputs
from library.sampling.gen_img_arguments import add_feature_arguments
from library.writable import check_writable_dir


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
    model.add_argument("--textual_inversion_embeddings", type=str, nargs="*", default=None, metavar="PATH",
                       help="embedding files or folders (searched recursively, like AUTOMATIC1111's embeddings folder); "
                            "each file's name (without extension) is its trigger word")

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
    add_feature_arguments(parser)
    add_logging_arguments(parser)  # sd-scripts' --console_log_level / --console_log_file / --console_log_simple
    return parser


def main(argv: list[str] | None = None) -> None:
    args = setup_parser().parse_args(argv)
    configure_console_logging(args)
    run.check_flags(args)

    # prompts, images, devices and the output folder first: their errors come before the (slow) model load
    device, dtype = run.pick_device_and_dtype(args)
    specs = inputs.read_prompt_specs(args.prompt, args.from_file)
    init_images = inputs.load_images(args.image_path, "--image_path") if args.image_path else []
    mask_images = inputs.load_images(args.mask_path, "--mask_path") if args.mask_path else []
    if init_images and not specs and not args.interactive:
        specs, init_images, mask_images = inputs.prompts_from_images(init_images, mask_images, args.images_per_prompt)
    embeddings = inputs.embedding_files(args.textual_inversion_embeddings or [])
    check_writable_dir(args.outdir, "--outdir")

    model = run.load_model(args, dtype)
    run.generate(args, model, specs, init_images, mask_images, device, embeddings)


if __name__ == "__main__":
    sys.exit(run_main(main))
