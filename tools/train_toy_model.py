"""Train the toy SD1-style model from scratch on the toy world, on a CPU, and save it in diffusers format.

Phases, each visible below:
  1. VAE (AutoencoderKL, /4) on freshly drawn scenes: L1 reconstruction + a small KL term.
  2. Encode a fixed set of scenes to latents once; the latent scale becomes vae.config.scaling_factor.
  3. UNet + CLIP text encoder jointly, from scratch, on (latent, caption) pairs with caption dropout
     (so classifier-free guidance works) and captions without their color word ("a star on a black background",
     so a prompt that names no color draws a shape in one of the colors seen with it), min-SNR weighting and
     EMA weights; the EMA weights are saved
     as the model every --save_every steps, so a partial run still leaves a usable model.
The held-out concept (library.toyworld.world.HELD_OUT), and every --hold_out pair, is excluded from every phase.
See docs/toy_model.md for the run that produced library/resources/toy_model.

    python tools/train_toy_model.py --out library/resources/toy_model
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from library.hardware import cpu_has_native_bf16  # noqa: E402
from library.tokenizers import load_bundled_tokenizer  # noqa: E402
from library.toyworld.evaluate import concept_rate, prompt_following  # noqa: E402
from library.toyworld.model import TOY_MODEL_DIR  # noqa: E402
from library.toyworld.classifier import accuracy, classify  # noqa: E402
from library.toyworld.world import BACKGROUNDS, HELD_OUT, caption, render_array, sample_scene, sample_scenes  # noqa: E402

TEXT_HIDDEN = 64  # the 49408-row token table dominates the text encoder: 49408 x 64 x 2 bytes = 6.3 MB in fp16


def _pair(text: str) -> tuple[str, str]:
    from library.toyworld.world import COLORS, SHAPES

    parts = tuple(p.strip() for p in text.split(","))
    if len(parts) != 2 or parts[0] not in COLORS or parts[1] not in SHAPES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected COLOR,SHAPE with a color of {', '.join(COLORS)} and a shape of {', '.join(SHAPES)}")
    return parts


def held_out(args) -> list[tuple[str, str]]:
    """Every (color, shape) kept out of training: the purple star and the --hold_out pairs."""
    return [HELD_OUT, *[tuple(p) for p in args.hold_out if tuple(p) != HELD_OUT]]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(TOY_MODEL_DIR), help="diffusers directory to write the model to")
    p.add_argument("--work_dir", default="build/toy_model_work", help="VAE checkpoint and cached latents")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, scenes and noise")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--phase", choices=("all", "vae", "unet"), default="all", help="'unet' reuses the VAE in --work_dir")
    p.add_argument("--vae_from", default=None, metavar="MODEL_DIR",
                   help="with --phase unet: the VAE of this diffusers model (e.g. library/resources/toy_model) instead of "
                        "--work_dir's; its train_info.json is kept under vae_from")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--vae_steps", type=int, default=600)
    p.add_argument("--vae_lr", type=float, default=1e-3)
    p.add_argument("--vae_init", default=None, help="continue training this VAE (a diffusers directory) instead of a fresh one")
    p.add_argument("--vae_batch_size", type=int, default=None, help="VAE batch size (default: --batch_size)")
    p.add_argument("--kl_weight", type=float, default=1e-6, help="weight of the KL term (summed over latent elements)")
    p.add_argument("--num_images", type=int, default=16000, help="scenes encoded once for the UNet phase")
    p.add_argument("--unet_steps", type=int, default=2400)
    p.add_argument("--unet_lr", type=float, default=5e-4)
    p.add_argument("--unet_init", default=None, help="continue from this model's UNet and text encoder (a diffusers directory) instead of fresh ones")
    p.add_argument("--warmup_steps", type=int, default=100)
    p.add_argument("--caption_dropout", type=float, default=0.1, help="fraction of empty captions (for guidance)")
    p.add_argument("--color_dropout", type=float, default=0.2,
                   help="fraction of captions without their color word: a Textual Inversion init word alone ('star') then "
                        "means a star of a seen color, not whatever color the model improvises")
    p.add_argument("--noise_offset", type=float, default=0.1, help="per-channel noise offset: lets flat black/white backgrounds come out")
    p.add_argument("--min_snr_gamma", type=float, default=5.0, help="min-SNR loss weighting; 0 disables")
    p.add_argument("--ema_decay", type=float, default=0.999)
    p.add_argument("--save_every", type=int, default=400, help="save the EMA model (and score it) every N UNet steps")
    p.add_argument("--eval_prompts", type=int, default=32, help="seen-combination prompts scored at each save")
    p.add_argument("--max_minutes", type=float, default=0, help="stop the UNet phase after this many minutes; 0: no limit")
    p.add_argument("--hold_out", action="append", default=[], metavar="COLOR,SHAPE", type=_pair,
                   help="another (color, shape) to keep out of every phase besides the purple star (repeatable): a second "
                        "concept the model never sees, for Textual Inversion runs that train several concepts")
    p.add_argument("--bf16_vae", action=argparse.BooleanOptionalAction, default=cpu_has_native_bf16(),
                   help="bf16 autocast for the VAE: 4x faster on CPUs with AVX512-BF16/AMX, about 100x slower on CPUs without "
                        "(the default follows this CPU)")
    args = p.parse_args(argv)
    if args.vae_from and args.phase != "unet":
        p.error(f"--vae_from takes the VAE of another model for the UNet phase; it needs --phase unet (got --phase {args.phase})")
    return args


# ----------------------------------------------------------------------------------------------- models


def build_vae() -> AutoencoderKL:
    # 3 blocks = downsampling by 4: 64x64 images -> 16x16 latents (a /8 VAE leaves 8x8, too coarse for a star)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=64,
    )


def build_unet() -> UNet2DConditionModel:
    # attention only at 8x8 and 4x4: self-attention over 256 positions at 16x16 doubles the step time
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(64, 128, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def build_text_encoder() -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=TEXT_HIDDEN * 4,
            num_hidden_layers=3,  # >= 2 so --clip_skip 2 still has a layer to read
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )


def build_scheduler() -> DDPMScheduler:
    # Stable Diffusion 1.x's own training schedule, so the TI trainer's SD1 path applies unchanged
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


# ----------------------------------------------------------------------------------------------- helpers


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], as diffusers' VAEs expect."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Multiplier: linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        ema_params = [p for p in ema.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)


def make_pipeline(vae, text_encoder, unet, tokenizer, scheduler) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_model(out: Path, vae, text_encoder, unet, tokenizer, info: dict) -> None:
    """Write the model as an fp16 diffusers directory that loads as fp32 by default."""
    out.mkdir(parents=True, exist_ok=True)
    halves = [copy.deepcopy(m).to(torch.float16) for m in (vae, text_encoder, unet)]
    make_pipeline(*halves[:2], halves[2], tokenizer, build_scheduler()).save_pretrained(str(out), safe_serialization=True)
    # transformers >= 5 loads in the dtype named by config.json; fp16 storage is for size, compute stays fp32
    config_path = out / "text_encoder" / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------------------------- phases


def train_vae(args, rng: np.random.Generator) -> AutoencoderKL:
    vae = AutoencoderKL.from_pretrained(args.vae_init) if args.vae_init else build_vae()
    batch_size = args.vae_batch_size or args.batch_size
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    start, running = time.time(), []
    for step in range(args.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = args.vae_lr * cosine_lr(step, args.vae_steps, args.warmup_steps)
        pixels = to_pixels(render_array([sample_scene(rng, exclude=held_out(args)) for _ in range(batch_size)]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16_vae):
            posterior = vae.encode(pixels).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample
        # L1 keeps the flat-color edges sharp; the KL term only keeps the latents near unit scale
        recon_loss = (reconstruction.float() - pixels).abs().mean()
        kl_loss = posterior.kl().float().mean()
        loss = recon_loss + args.kl_weight * kl_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        running.append((recon_loss.item(), kl_loss.item()))
        if (step + 1) % 25 == 0 or step + 1 == args.vae_steps:
            l1, kl = np.mean(running, axis=0)
            running = []
            log(f"vae step {step + 1}/{args.vae_steps}  l1 {l1:.4f}  kl {kl:.1f}  {(time.time() - start) / (step + 1):.2f} s/step")
    return vae


@torch.no_grad()
def reconstruction_accuracy(vae: AutoencoderKL, scenes, bf16: bool) -> dict[str, float]:
    """Classifier accuracy on the VAE's reconstructions: the ceiling for any generated image."""
    pixels = to_pixels(render_array(scenes))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample.float()
    images = ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return accuracy([classify(image) for image in images], [s.concept for s in scenes])


@torch.no_grad()
def encode_scenes(vae: AutoencoderKL, scenes, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of each scene's latent (float32, N x 4 x 16 x 16)."""
    means, stds = [], []
    for i in range(0, len(scenes), 256):
        pixels = to_pixels(render_array(scenes[i : i + 256]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            posterior = vae.encode(pixels).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    return torch.cat(means), torch.cat(stds)


def train_unet(args, vae, latent_mean, latent_std, captions, colorless, tokenizer, out: Path, info: dict):
    """`captions[i]` names scene i's color, shape and background; `colorless[i]` its shape and background only."""
    torch.manual_seed(args.seed + 1)
    scheduler = build_scheduler()
    if args.unet_init:
        # stored fp16; the config names float32, so both load as fp32 master weights
        unet = UNet2DConditionModel.from_pretrained(args.unet_init, subfolder="unet", torch_dtype=torch.float32)
        text_encoder = CLIPTextModel.from_pretrained(args.unet_init, subfolder="text_encoder")
        info["continued_from"] = json.loads((Path(args.unet_init) / "train_info.json").read_text())
    else:
        unet, text_encoder = build_unet(), build_text_encoder()
    unet.train()
    text_encoder.train()
    ema_unet, ema_text_encoder = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.0)

    # every caption tokenized once; index -1 is the empty caption used for dropout
    unique = sorted(set(captions) | set(colorless))
    ids = tokenizer(unique + [""], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    caption_index = torch.tensor([unique.index(c) for c in captions])
    colorless_index = torch.tensor([unique.index(c) for c in colorless])
    alphas_cumprod = scheduler.alphas_cumprod
    scale = vae.config.scaling_factor
    sampling_scheduler = DDIMScheduler.from_config(scheduler.config)
    eval_scenes = sample_scenes(args.eval_prompts, args.seed + 7, exclude=held_out(args))

    generator = torch.Generator().manual_seed(args.seed + 2)
    start, running, n = time.time(), [], latent_mean.shape[0]
    for step in range(args.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = args.unet_lr * cosine_lr(step, args.unet_steps, args.warmup_steps)
        batch = torch.randint(0, n, (args.batch_size,), generator=generator)
        latents = (latent_mean[batch] + latent_std[batch] * torch.randn(latent_mean[batch].shape, generator=generator)) * scale
        rows = caption_index[batch].clone()
        draw = torch.rand(args.batch_size, generator=generator)
        rows[draw < args.caption_dropout] = len(unique)  # empty caption
        no_color = (draw >= args.caption_dropout) & (draw < args.caption_dropout + args.color_dropout)
        rows[no_color] = colorless_index[batch][no_color]
        noise = torch.randn(latents.shape, generator=generator)
        noise += args.noise_offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)

        encoder_hidden_states = text_encoder(ids[rows])[0]
        prediction = unet(noisy, timesteps, encoder_hidden_states).sample
        loss_per_sample = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
        if args.min_snr_gamma > 0:
            # min-SNR: stop the many easy low-noise steps from dominating, so layout and color are learned sooner
            snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
            loss_per_sample = loss_per_sample * torch.clamp(snr, max=args.min_snr_gamma) / snr
        loss = loss_per_sample.mean()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        # EMA warms up from a short horizon, so early checkpoints are not dominated by the random init
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text_encoder, text_encoder, decay)
        running.append(loss.item())

        done = step + 1 == args.unet_steps
        out_of_time = args.max_minutes > 0 and time.time() - start > args.max_minutes * 60
        if (step + 1) % 25 == 0 or done or out_of_time:
            log(f"unet step {step + 1}/{args.unet_steps}  loss {np.mean(running):.4f}  {(time.time() - start) / (step + 1):.2f} s/step")
            info["unet_loss_last_25"] = float(np.mean(running))
            running = []
        if (step + 1) % args.save_every == 0 or done or out_of_time:
            pipe = make_pipeline(vae, ema_text_encoder, ema_unet, tokenizer, sampling_scheduler)
            scores = prompt_following(pipe, eval_scenes, seed=0, num_inference_steps=20)  # a quick progress check
            # the Textual Inversion baseline: how often "a star on a ... background" comes out as the held-out purple star
            init_word = float(np.mean([concept_rate(pipe, f"a {HELD_OUT[1]} on a {bg} background", HELD_OUT, 8, num_inference_steps=20)
                                       for bg in BACKGROUNDS]))
            info.update(unet_steps_done=step + 1, unet_minutes=round((time.time() - start) / 60, 1), eval_seen_prompts=scores,
                        eval_init_word_held_out_rate=init_word)
            for color, shape in held_out(args)[1:]:  # each further held-out pair's init-word baseline
                info[f"eval_init_word_rate_{color}_{shape}"] = float(np.mean([
                    concept_rate(pipe, f"a {shape} on a {bg} background", (color, shape), 8, num_inference_steps=20) for bg in BACKGROUNDS]))
            save_model(out, vae, ema_text_encoder, ema_unet, tokenizer, info)
            log(f"saved {out} at step {step + 1}; {args.eval_prompts} seen prompts, 20 DDIM steps, guidance 5: {scores}; "
                f"'a {HELD_OUT[1]} on a ... background' drew the held-out concept {init_word:.0%} of the time")
        if out_of_time:
            log(f"--max_minutes {args.max_minutes} reached; stopping")
            break


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    work, out = Path(args.work_dir), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    info = {"script": "tools/train_toy_model.py", "args": vars(args), "held_out": list(HELD_OUT),
            "also_held_out": [list(p) for p in held_out(args)[1:]]}
    t0 = time.time()

    # 1. VAE
    if args.phase in ("all", "vae"):
        vae = train_vae(args, rng)
        vae.save_pretrained(str(work / "vae"))
        info["vae_minutes"] = round((time.time() - t0) / 60, 1)
        info["vae_reconstruction_seen"] = reconstruction_accuracy(vae, sample_scenes(200, args.seed + 50, exclude=held_out(args)), args.bf16_vae)
        info["vae_reconstruction_held_out"] = reconstruction_accuracy(vae, sample_scenes(100, args.seed + 51, include=[HELD_OUT]), args.bf16_vae)
        log(f"VAE reconstructions, classifier accuracy: seen {info['vae_reconstruction_seen']}, held-out {info['vae_reconstruction_held_out']}")
        if args.phase == "vae":
            return
    elif args.vae_from:
        vae = AutoencoderKL.from_pretrained(args.vae_from, subfolder="vae", torch_dtype=torch.float32)
        record = Path(args.vae_from) / "train_info.json"
        info["vae_from"] = {"model": args.vae_from, "train_info": json.loads(record.read_text()) if record.is_file() else None}
    else:
        vae = AutoencoderKL.from_pretrained(str(work / "vae"))
    vae.requires_grad_(False).eval()

    # 2. latents of a fixed scene set, and the latent scale SD models record as scaling_factor
    t1 = time.time()
    scenes = sample_scenes(args.num_images, seed=args.seed + 100, exclude=held_out(args))
    latent_mean, latent_std = encode_scenes(vae, scenes, args.bf16_vae)
    scaling_factor = float(1.0 / latent_mean.std())
    vae.register_to_config(scaling_factor=scaling_factor)
    log(f"encoded {len(scenes)} scenes in {time.time() - t1:.0f}s; scaling_factor {scaling_factor:.4f}")
    info["scaling_factor"] = scaling_factor

    # 3. UNet + text encoder
    tokenizer = load_bundled_tokenizer("sd1")
    colorless = [caption(s, subject=s.shape) for s in scenes]
    train_unet(args, vae, latent_mean, latent_std, [caption(s) for s in scenes], colorless, tokenizer, out, info)
    log(f"total {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
