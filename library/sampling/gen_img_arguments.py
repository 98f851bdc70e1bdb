"""gen_img.py's flags for sd-scripts' generation features, and the sd-scripts flags this suite refuses.

Kept beside the run (gen_img_run.py reads every one of them) so that gen_img.py's parser stays a short list.
"""

from __future__ import annotations

import argparse

from library.errors import UserError

# sd-scripts gen_img.py flags for LoRA/networks, ControlNet and prompter modules: accepted by the parser so that
# their command lines get a clear message instead of argparse's "unrecognized arguments"
NOT_IN_SUITE: dict[str, str] = {
    "--network_module": "LoRA and other additional networks",
    "--network_weights": "LoRA and other additional networks",
    "--network_mul": "LoRA and other additional networks",
    "--network_args": "LoRA and other additional networks",
    "--network_show_meta": "LoRA and other additional networks",
    "--network_merge_n_models": "LoRA and other additional networks",
    "--network_merge": "LoRA and other additional networks",
    "--network_pre_calc": "LoRA and other additional networks",
    "--network_regional_mask_max_color_codes": "LoRA and other additional networks",
    "--control_net_lllite_models": "ControlNet",
    "--control_net_models": "ControlNet",
    "--control_net_preps": "ControlNet",
    "--control_net_multipliers": "ControlNet",
    "--control_net_ratios": "ControlNet",
    "--guide_image_path": "ControlNet guide images",
    "--highres_fix_disable_control_net": "ControlNet",
    "--clip_vision_strength": "CLIP Vision conditioning",
    "--from_module": "prompter modules (use --from_file)",
    "--prompter_module_args": "prompter modules (use --from_file)",
    "--highres_fix_upscaler": "upscaler network modules (the high-resolution fix upscales with LANCZOS, "
                              "or bilinear latents with --highres_fix_latents_upscaling)",
    "--highres_fix_upscaler_args": "upscaler network modules",
}


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """sd-scripts' generation features: high-resolution fix, VAE, noise, Deep Shrink, Gradual Latent, output."""
    hr = parser.add_argument_group("high-resolution fix")
    hr.add_argument("--highres_fix_scale", type=float, default=None,
                    help="enable the high-resolution fix: draw first at this scale of the size (e.g. 0.5), then img2img at full size")
    hr.add_argument("--highres_fix_steps", type=int, default=28, help="steps of the first stage (default 28)")
    hr.add_argument("--highres_fix_strength", type=float, default=None,
                    help="img2img strength of the first stage when starting from --image_path (default: --strength)")
    hr.add_argument("--highres_fix_save_1st", action="store_true", help="also save the first-stage images")
    hr.add_argument("--highres_fix_latents_upscaling", action="store_true",
                    help="upscale the first stage's latents (bilinear) instead of its images (LANCZOS)")

    vae = parser.add_argument_group("VAE, noise and sampling")
    vae.add_argument("--vae_batch_size", type=float, default=None,
                     help="images per VAE decode (default 1); below 1: that fraction of --batch_size")
    vae.add_argument("--vae_slices", type=int, default=None,
                     help="decode in tiles to save memory: tiles of 1/N of the image height (diffusers' VAE tiling)")
    vae.add_argument("--zero_terminal_snr", action="store_true",
                     help="rescale the sampler's betas to zero terminal SNR (ddim, euler, euler_a, dpmsolver, dpmsolver++)")
    vae.add_argument("--noise_offset_prob", type=float, default=None, help="probability of a noise offset on an image's starting noise")
    vae.add_argument("--noise_offset_range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                     help="range of the noise offset (needed with --noise_offset_prob)")
    vae.add_argument("--pyramid_noise_prob", type=float, default=None, help="probability of pyramid noise as an image's starting noise")
    vae.add_argument("--pyramid_noise_discount_range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                     help="range of the pyramid noise discount (needed with --pyramid_noise_prob)")
    vae.add_argument("--emb_normalize_mode", type=str, default="original", choices=["original", "none", "abs"],
                     help="after prompt weighting, restore the mean (original, default), the mean of absolute values (abs), or nothing (none)")
    vae.add_argument("--shuffle_prompts", action="store_true", help="shuffle the prompts anew in each --n_iter iteration")
    vae.add_argument("--opt_channels_last", action="store_true", help="put the UNet and VAE in channels-last memory format")

    ds = parser.add_argument_group("Deep Shrink")
    ds.add_argument("--ds_depth_1", type=int, default=None, help="enable Deep Shrink: shrink the UNet's input block at this depth (0-8 on SDXL, 0-11 on SD)")
    ds.add_argument("--ds_timesteps_1", type=int, default=650, help="shrink at depth 1 while the timestep is at least this (default 650)")
    ds.add_argument("--ds_depth_2", type=int, default=None, help="a second depth, used below --ds_timesteps_1 down to --ds_timesteps_2")
    ds.add_argument("--ds_timesteps_2", type=int, default=650, help="shrink at depth 2 while the timestep is at least this (default 650)")
    ds.add_argument("--ds_ratio", type=float, default=0.5, help="Deep Shrink scale (default 0.5)")

    gl = parser.add_argument_group("Gradual Latent (euler_a)")
    gl.add_argument("--gradual_latent_timesteps", type=int, default=None,
                    help="enable Gradual Latent: start small and grow the latents from this timestep on")
    gl.add_argument("--gradual_latent_ratio", type=float, default=0.5, help="starting size ratio (default 0.5)")
    gl.add_argument("--gradual_latent_ratio_step", type=float, default=0.125, help="ratio added at each growth (default 0.125)")
    gl.add_argument("--gradual_latent_every_n_steps", type=int, default=3, help="grow every N steps (default 3)")
    gl.add_argument("--gradual_latent_s_noise", type=float, default=1.0, help="noise scale at the growing steps (default 1.0)")
    gl.add_argument("--gradual_latent_unsharp_params", type=str, default=None,
                    help="unsharp mask after each growth: ksize,sigma,strength[,target_x], e.g. 3,0.5,0.5,1")

    out = parser.add_argument_group("output (sd-scripts compatibility)")
    out.add_argument("--use_original_file_name", action="store_true",
                     help="img2img: name each image after its source image (NAME.png, then NAME_1.png, ...)")
    out.add_argument("--diffusers_xformers", action="store_true", help="same as --xformers (sd-scripts' diffusers xformers)")
    out.add_argument("--full_fp16", action="store_true", help="same as --fp16 (the model is loaded in the run's dtype)")
    out.add_argument("--full_bf16", action="store_true", help="same as --bf16 (the model is loaded in the run's dtype)")

    from library.training.compat_flags import GEN_IMG_COMPAT_FLAGS, add_compat_arguments

    add_compat_arguments(parser, GEN_IMG_COMPAT_FLAGS)  # --no_preview
    refused = parser.add_argument_group("sd-scripts flags that are not part of this suite (refused with a clear error)")
    for flag, what in NOT_IN_SUITE.items():
        refused.add_argument(flag, nargs="*", default=None, help=f"not part of this suite: {what}")


def check_feature_flags(args: argparse.Namespace) -> list[str]:
    """Problems with the feature flags (the caller raises them all at once); also folds the alias flags."""
    problems = []
    for flag, what in NOT_IN_SUITE.items():
        if getattr(args, flag.lstrip("-")) is not None:
            problems.append(f"{flag} is not part of this suite ({what}): this suite generates with textual-inversion "
                            "embeddings only; drop the flag")
    args.xformers = args.xformers or args.diffusers_xformers
    args.fp16 = args.fp16 or args.full_fp16
    args.bf16 = args.bf16 or args.full_bf16
    if args.highres_fix_scale is not None:
        if not 0 < args.highres_fix_scale < 1:
            problems.append(f"--highres_fix_scale must be between 0 and 1 (the first stage's share of the size), got {args.highres_fix_scale}")
        if args.highres_fix_steps < 1:
            problems.append(f"--highres_fix_steps must be at least 1, got {args.highres_fix_steps}")
        if args.highres_fix_strength is not None and not 0 < args.highres_fix_strength <= 1:
            problems.append(f"--highres_fix_strength must be in (0, 1], got {args.highres_fix_strength}")
        if args.gradual_latent_timesteps is not None:
            problems.append("--highres_fix_scale and --gradual_latent_timesteps both change the size while sampling; give one")
    else:
        for flag in ("highres_fix_strength", "highres_fix_save_1st", "highres_fix_latents_upscaling"):
            if getattr(args, flag) not in (None, False):
                problems.append(f"--{flag} needs --highres_fix_scale (the high-resolution fix is off without it)")
    if args.vae_batch_size is not None and args.vae_batch_size <= 0:
        problems.append(f"--vae_batch_size must be above 0, got {args.vae_batch_size}")
    if args.vae_batch_size is not None and args.vae_batch_size >= 1 and args.vae_batch_size != int(args.vae_batch_size):
        problems.append(f"--vae_batch_size of 1 or more must be a whole number, got {args.vae_batch_size}")
    if args.vae_slices is not None and args.vae_slices < 1:
        problems.append(f"--vae_slices must be at least 1, got {args.vae_slices}")
    for prob, rng, low in (("noise_offset_prob", "noise_offset_range", None), ("pyramid_noise_prob", "pyramid_noise_discount_range", 0)):
        p, r = getattr(args, prob), getattr(args, rng)
        if p is not None and not 0 <= p <= 1:
            problems.append(f"--{prob} must be between 0 and 1, got {p}")
        if p is not None and r is None:
            problems.append(f"--{prob} needs --{rng} MIN MAX")
        if r is not None and p is None:
            problems.append(f"--{rng} has no effect without --{prob}")
        if r is not None and r[0] > r[1]:
            problems.append(f"--{rng}: MIN {r[0]} is above MAX {r[1]}")
    if args.ds_depth_1 is None and args.ds_depth_2 is not None:
        problems.append("--ds_depth_2 needs --ds_depth_1 (Deep Shrink is off without it)")
    if not 0 < args.ds_ratio < 1:
        problems.append(f"--ds_ratio must be between 0 and 1, got {args.ds_ratio}")
    if args.gradual_latent_timesteps is not None:
        if args.sampler != "euler_a":
            problems.append(f"--gradual_latent_timesteps works only with --sampler euler_a (got {args.sampler})")
        if not 0 < args.gradual_latent_ratio <= 1 or args.gradual_latent_ratio_step <= 0:
            problems.append("--gradual_latent_ratio must be in (0, 1] and --gradual_latent_ratio_step above 0")
        if args.gradual_latent_every_n_steps < 1:
            problems.append(f"--gradual_latent_every_n_steps must be at least 1, got {args.gradual_latent_every_n_steps}")
        if args.image_path:
            problems.append("--gradual_latent_timesteps is for txt2img; it cannot start from --image_path images")
    if args.gradual_latent_unsharp_params is not None:
        from library.sampling.gradual_latent import parse_unsharp

        try:
            parse_unsharp(args.gradual_latent_unsharp_params, "--gradual_latent_unsharp_params")
        except UserError as err:
            problems.append(str(err))
    if args.zero_terminal_snr:
        from library.sampling.samplers import ZERO_TERMINAL_SNR_SAMPLERS

        if args.sampler not in ZERO_TERMINAL_SNR_SAMPLERS:
            problems.append(f"--zero_terminal_snr does not work with --sampler {args.sampler}; use one of {', '.join(ZERO_TERMINAL_SNR_SAMPLERS)}")
    if args.use_original_file_name and not args.image_path:
        problems.append("--use_original_file_name needs --image_path (it names images after their source images)")
    if args.use_original_file_name and args.sequential_file_name:
        problems.append("give --use_original_file_name or --sequential_file_name, not both")
    return problems


def render_settings(args: argparse.Namespace):
    """RenderOptions and the Deep Shrink / Gradual Latent defaults from the flags (after check_feature_flags)."""
    from library.sampling.deep_shrink import DeepShrink
    from library.sampling.generate import RenderOptions
    from library.sampling.gradual_latent import GradualLatent, parse_unsharp
    from library.sampling.highres import HighresFix
    from library.sampling.noise import NoiseSettings

    vae_batch = 1
    if args.vae_batch_size is not None:
        vae_batch = max(1, int(args.batch_size * args.vae_batch_size)) if args.vae_batch_size < 1 else int(args.vae_batch_size)
    highres = None
    if args.highres_fix_scale is not None:
        highres = HighresFix(args.highres_fix_scale, args.highres_fix_steps, args.highres_fix_strength,
                             args.highres_fix_save_1st, args.highres_fix_latents_upscaling)
    options = RenderOptions(
        vae_batch_size=vae_batch,
        noise=NoiseSettings(args.noise_offset_prob, tuple(args.noise_offset_range) if args.noise_offset_range else None,
                            args.pyramid_noise_prob,
                            tuple(args.pyramid_noise_discount_range) if args.pyramid_noise_discount_range else None),
        zero_terminal_snr=args.zero_terminal_snr, highres=highres, emb_normalize_mode=args.emb_normalize_mode)
    ds_base = DeepShrink(args.ds_depth_1 if args.ds_depth_1 is not None else 3, args.ds_timesteps_1, args.ds_depth_2,
                         args.ds_timesteps_2, args.ds_ratio)
    gl_base = GradualLatent(args.gradual_latent_timesteps if args.gradual_latent_timesteps is not None else 650,
                            args.gradual_latent_ratio, args.gradual_latent_ratio_step, args.gradual_latent_every_n_steps,
                            args.gradual_latent_s_noise,
                            parse_unsharp(args.gradual_latent_unsharp_params, "--gradual_latent_unsharp_params"))
    shrink = ds_base if args.ds_depth_1 is not None else None
    gradual = gl_base if args.gradual_latent_timesteps is not None else None
    return options, dict(deep_shrink=shrink, deep_shrink_base=ds_base, gradual_latent=gradual, gradual_latent_base=gl_base)


def prepare_modules(args: argparse.Namespace, model, height: int) -> None:
    """--opt_channels_last and --vae_slices on the loaded model."""
    import torch

    if args.opt_channels_last:
        model.unet.to(memory_format=torch.channels_last)
        model.vae.to(memory_format=torch.channels_last)
    if args.vae_slices:
        # tiles of 1/N of the image height (at least 64 px), overlapping by diffusers' default quarter
        tile = max(64, (height // args.vae_slices) // 8 * 8)
        factor = 2 ** (len(model.vae.config.block_out_channels) - 1)
        model.vae.enable_tiling()
        model.vae.tile_sample_min_size = tile
        model.vae.tile_latent_min_size = max(1, tile // factor)


def raise_problems(problems: list[str]) -> None:
    if len(problems) == 1:
        raise UserError(problems[0])
    if problems:
        raise UserError(f"{len(problems)} problems with the flags: " + "; ".join(problems))
