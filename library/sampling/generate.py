"""Images from prompt specs: plan each image's settings and seed, then render batches with diffusers pipelines.

Shared by gen_img.py and the trainer's sample images. Planning is pure (`plan_images`); rendering
(`ImageRenderer`) builds a StableDiffusion(XL) txt2img / img2img / inpaint pipeline from the loaded components,
feeds it our own prompt embeddings (long prompts, weighting, embedding tokens) and decodes the latents itself,
so that a full-precision VAE (`--no_half_vae`) works beside a half-precision UNet.

Every image gets its own CPU `torch.Generator` seeded with its seed, so an image depends on its seed, not on
its position in the batch or on the device's RNG.
"""

from __future__ import annotations

import contextlib
import logging
import random
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch
from PIL import Image

from library.errors import UserError
from library.models.fp8_storage import compute_dtype_of
from library.sampling.deep_shrink import DeepShrink, deep_shrink
from library.sampling.gradual_latent import GradualLatent, parse_unsharp
from library.sampling.highres import HighresFix, first_stage_job, second_stage_job
from library.sampling.noise import NoiseSettings, starting_noise
from library.sampling.prompt_options import PromptSpec
from library.sampling.prompt_weighting import PromptEmbeds, PromptEncoder
from library.sampling.samplers import canonical_sampler, check_zero_terminal_snr, make_sample_scheduler

logger = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1


@dataclass
class SamplingModel:
    """The loaded parts generation needs; the same field names as `library.models.loading.LoadedModels`."""

    family: str  # "sd1", "sd2" or "sdxl"
    tokenizers: list
    text_encoders: list
    unet: torch.nn.Module
    vae: torch.nn.Module
    noise_scheduler: object
    v_parameterization: bool = False
    source: str = ""  # shown as `Model:` in the PNG metadata


def sampling_model_from_components(family: str, parts: dict, *, source: str = "") -> SamplingModel:
    """A SamplingModel from diffusers-named components (`unet`, `vae`, `text_encoder`, `tokenizer_2`, ...)."""
    tokenizers = [parts["tokenizer"]] + ([parts["tokenizer_2"]] if family == "sdxl" else [])
    encoders = [parts["text_encoder"]] + ([parts["text_encoder_2"]] if family == "sdxl" else [])
    scheduler = parts["scheduler"]
    v_pred = getattr(scheduler.config, "prediction_type", "epsilon") == "v_prediction"
    return SamplingModel(family, tokenizers, encoders, parts["unet"], parts["vae"], scheduler, v_pred, source)


@dataclass(frozen=True)
class GenerationDefaults:
    """Settings for prompts that do not give their own (sd-scripts' sampling defaults)."""

    width: int = 512
    height: int = 512
    steps: int = 30
    scale: float = 7.5
    sampler: str = "ddim"
    negative_prompt: str = ""
    negative_scale: float | None = None
    strength: float = 0.8
    original_width: int | None = None  # SDXL; None: the image size
    original_height: int | None = None
    original_width_negative: int | None = None  # None: the original size
    original_height_negative: int | None = None
    crop_top: int = 0
    crop_left: int = 0
    deep_shrink: DeepShrink | None = None  # --ds_depth_1 given: every prompt; None: only prompts with --dsd1 ...
    deep_shrink_base: DeepShrink = DeepShrink(3)  # what a prompt's --ds* options override (depth: --ds_depth_1 or 3)
    gradual_latent: GradualLatent | None = None
    gradual_latent_base: GradualLatent = GradualLatent(650)


@dataclass(frozen=True)
class ImageJob:
    """Everything that decides one image."""

    index: int  # position in this run, from 0
    prompt_index: int  # which prompt (spec) it came from
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    scale: float
    sampler: str
    seed: int
    seed_given: bool  # the prompt or --seed fixed it (sd-scripts names sample files by it only then)
    negative_scale: float | None = None
    strength: float = 0.8
    original_size: tuple[int, int] = (0, 0)  # SDXL (height, width)
    negative_original_size: tuple[int, int] = (0, 0)
    crop_top_left: tuple[int, int] = (0, 0)
    source: str | None = None
    deep_shrink: DeepShrink | None = None
    gradual_latent: GradualLatent | None = None

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one pipeline call (everything but prompts and seed)."""
        return (self.width, self.height, self.steps, self.scale, self.sampler, self.negative_scale, self.strength,
                self.original_size, self.negative_original_size, self.crop_top_left, self.deep_shrink,
                self.gradual_latent)


def round_size(value: int) -> int:
    """Down to a multiple of 8, at least 64, as sd-scripts rounds sample sizes."""
    return max(64, value - value % 8)


def _pick(value, default):
    return default if value is None else value


def resolve_spec(spec: PromptSpec, defaults: GenerationDefaults) -> dict:
    """The spec's settings with defaults filled in and sizes rounded (no seed)."""
    width = _pick(spec.width, defaults.width)
    height = _pick(spec.height, defaults.height)
    if round_size(width) != width or round_size(height) != height:
        logger.warning("%s: size %dx%d rounded to %dx%d (multiples of 8, at least 64)", spec.source or "prompt",
                       width, height, round_size(width), round_size(height))
        width, height = round_size(width), round_size(height)
    original = (_pick(spec.original_height, _pick(defaults.original_height, height)),
                _pick(spec.original_width, _pick(defaults.original_width, width)))
    negative_original = (_pick(spec.original_height_negative, _pick(defaults.original_height_negative, original[0])),
                         _pick(spec.original_width_negative, _pick(defaults.original_width_negative, original[1])))
    return dict(
        prompt=spec.prompt,
        negative_prompt=_pick(spec.negative_prompt, defaults.negative_prompt),
        width=width,
        height=height,
        steps=_pick(spec.steps, defaults.steps),
        scale=_pick(spec.scale, defaults.scale),
        sampler=canonical_sampler(_pick(spec.sampler, defaults.sampler)),
        negative_scale=_pick(spec.negative_scale, defaults.negative_scale),
        strength=_pick(spec.strength, defaults.strength),
        original_size=original,
        negative_original_size=negative_original,
        crop_top_left=(_pick(spec.crop_top, defaults.crop_top), _pick(spec.crop_left, defaults.crop_left)),
        source=spec.source,
        deep_shrink=_deep_shrink_for(spec, defaults),
        gradual_latent=_gradual_latent_for(spec, defaults),
    )


_DS_FIELDS = {"ds_depth_1": "depth_1", "ds_timesteps_1": "timesteps_1", "ds_depth_2": "depth_2",
              "ds_timesteps_2": "timesteps_2", "ds_ratio": "ratio"}
_GL_FIELDS = {"gl_timesteps": "timesteps", "gl_ratio": "ratio", "gl_every_n_steps": "every_n_steps",
              "gl_ratio_step": "ratio_step", "gl_s_noise": "s_noise"}


def _deep_shrink_for(spec: PromptSpec, defaults: GenerationDefaults) -> DeepShrink | None:
    """The run's Deep Shrink, or the prompt's: any --ds* option switches it on for that prompt (sd-scripts)."""
    overrides = {name: getattr(spec, key) for key, name in _DS_FIELDS.items() if getattr(spec, key) is not None}
    if not overrides:
        return defaults.deep_shrink
    return replace(defaults.deep_shrink or defaults.deep_shrink_base, **overrides)


def _gradual_latent_for(spec: PromptSpec, defaults: GenerationDefaults) -> GradualLatent | None:
    """The run's Gradual Latent, or the prompt's: any --gl* option switches it on for that prompt (sd-scripts)."""
    overrides = {name: getattr(spec, key) for key, name in _GL_FIELDS.items() if getattr(spec, key) is not None}
    if spec.gl_unsharp is not None:
        overrides["unsharp"] = parse_unsharp(spec.gl_unsharp, f"{spec.source or 'prompt'} --glus")
    if not overrides:
        return defaults.gradual_latent
    return replace(defaults.gradual_latent or defaults.gradual_latent_base, **overrides)


class SeedSource:
    """sd-scripts' seed rules for a run.

    With `--seed S` and a run of exactly one image per iteration (one prompt, one image per prompt), S is that
    image's seed. Otherwise S seeds a random generator that draws every unfixed image's seed, so the whole run
    is reproducible; without S the draws are random. `iter_same_seed` gives every image of one iteration the
    same drawn seed. Seeds given in a prompt (`--d 1,2`) always win.
    """

    def __init__(self, seed: int | None = None, *, single_image: bool = False, iter_same_seed: bool = False):
        self.fixed = seed if (seed is not None and single_image) else None
        self.rng = random.Random(seed)
        self.iter_same_seed = iter_same_seed
        self.seed_given = seed is not None
        self._iteration_seed: int | None = None

    def draw(self) -> int:
        return self.fixed if self.fixed is not None else self.rng.randint(0, MAX_SEED)

    def start_iteration(self) -> None:
        self._iteration_seed = self.draw() if self.iter_same_seed else None

    def next_seed(self) -> int:
        return self._iteration_seed if self._iteration_seed is not None else self.draw()


def plan_images(
    specs: list[PromptSpec],
    defaults: GenerationDefaults = GenerationDefaults(),
    *,
    images_per_prompt: int = 1,
    n_iter: int = 1,
    seeds: SeedSource | None = None,
    start_index: int = 0,
    shuffle: random.Random | None = None,
) -> list[ImageJob]:
    """One ImageJob per image: n_iter x prompts x images_per_prompt, in sd-scripts' order.

    `shuffle` (--shuffle_prompts) shuffles the prompts anew for each iteration with that generator.
    """
    seeds = seeds or SeedSource()
    jobs: list[ImageJob] = []
    resolved = list(enumerate(zip(specs, [resolve_spec(spec, defaults) for spec in specs])))
    for _ in range(n_iter):
        seeds.start_iteration()
        order = list(resolved)
        if shuffle is not None:
            shuffle.shuffle(order)
        for prompt_index, (spec, settings) in order:
            given = list(spec.seeds)
            for _k in range(images_per_prompt):
                # sd-scripts: prompt seeds are used in turn; the last one repeats; a final -1 means random
                if given and given[0] != -1:
                    seed, seed_given = (given.pop(0) if len(given) > 1 else given[0]), True
                else:
                    seed, seed_given = seeds.next_seed(), seeds.seed_given
                jobs.append(ImageJob(index=start_index + len(jobs), prompt_index=prompt_index, seed=seed,
                                     seed_given=seed_given, **settings))
    return jobs


def batches(jobs: list[ImageJob], batch_size: int) -> Iterator[list[ImageJob]]:
    """Consecutive jobs with the same settings, at most `batch_size` at a time (sd-scripts splits the same way)."""
    current: list[ImageJob] = []
    for job in jobs:
        if current and (len(current) == batch_size or current[-1].batch_key() != job.batch_key()):
            yield current
            current = []
        current.append(job)
    if current:
        yield current


@contextlib.contextmanager
def _vae_dtype_bridge(vae: torch.nn.Module):
    """Let a VAE of one dtype take and give tensors of another (an fp32 VAE beside an fp16 UNet).

    diffusers' img2img/inpaint pipelines hand the VAE images in the UNet's dtype and expect latents back in it.
    SDXL pipelines would instead move the whole VAE between dtypes (`force_upcast`); that is switched off here.
    """
    vae_dtype = next(vae.parameters()).dtype
    seen: list[torch.dtype] = []

    def cast_in(_module, args):
        seen.append(args[0].dtype)
        return (args[0].to(vae_dtype),) + tuple(args[1:])

    def cast_back(_module, _args, output):
        return output.to(seen[-1]) if seen else output

    handles = [vae.encoder.register_forward_pre_hook(cast_in)]
    last_encoder_stage = vae.quant_conv if getattr(vae, "quant_conv", None) is not None else vae.encoder
    handles.append(last_encoder_stage.register_forward_hook(cast_back))
    force_upcast = getattr(vae.config, "force_upcast", None)
    if force_upcast:
        vae.register_to_config(force_upcast=False)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if force_upcast:
            vae.register_to_config(force_upcast=force_upcast)


@contextlib.contextmanager
def _negative_scale_guidance(unet, negative: PromptEmbeds, scale: float, negative_scale: float):
    """sd-scripts' `--negative_scale`: noise = uncond + scale*(cond - uncond) - negative_scale*(neg - uncond).

    The pipeline runs classifier-free guidance with the empty prompt as "uncond"; this wraps the UNet so that
    each call also predicts the negative prompt and folds its term into the "cond" half, which the pipeline's
    own `uncond + scale*(cond - uncond)` then turns into the formula above.
    """
    original = unet.forward

    def forward(sample, timestep, encoder_hidden_states, *args, added_cond_kwargs=None, return_dict=True, **kwargs):
        b = sample.shape[0] // 2
        neg_states = negative.negative_prompt_embeds.to(encoder_hidden_states.device, encoder_hidden_states.dtype)
        if torch.is_tensor(timestep) and timestep.ndim > 0 and timestep.shape[0] == 2 * b:
            timestep = torch.cat([timestep, timestep[:b]])
        if added_cond_kwargs:
            added_cond_kwargs = dict(added_cond_kwargs)
            pooled = negative.negative_pooled_prompt_embeds.to(added_cond_kwargs["text_embeds"])
            added_cond_kwargs["text_embeds"] = torch.cat([added_cond_kwargs["text_embeds"], pooled])
            added_cond_kwargs["time_ids"] = torch.cat([added_cond_kwargs["time_ids"], added_cond_kwargs["time_ids"][:b]])
        out = original(torch.cat([sample, sample[:b]]), timestep, torch.cat([encoder_hidden_states, neg_states]),
                       *args, added_cond_kwargs=added_cond_kwargs, return_dict=False, **kwargs)[0]
        uncond, cond, neg = out[:b], out[b : 2 * b], out[2 * b :]
        out = torch.cat([uncond, cond - (negative_scale / scale) * (neg - uncond)])
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=out)
        return (out,)

    unet.forward = forward
    try:
        yield
    finally:
        del unet.forward  # the instance attribute; the class's forward shows through again


def _pipeline_class(family: str, kind: str):
    import diffusers

    names = {
        ("sd", "txt2img"): "StableDiffusionPipeline",
        ("sd", "img2img"): "StableDiffusionImg2ImgPipeline",
        ("sd", "inpaint"): "StableDiffusionInpaintPipeline",
        ("sdxl", "txt2img"): "StableDiffusionXLPipeline",
        ("sdxl", "img2img"): "StableDiffusionXLImg2ImgPipeline",
        ("sdxl", "inpaint"): "StableDiffusionXLInpaintPipeline",
    }
    return getattr(diffusers, names[("sdxl" if family == "sdxl" else "sd", kind)])


def build_pipeline(model: SamplingModel, scheduler, kind: str = "txt2img"):
    """A diffusers pipeline of the model's components (no safety checker, no watermark, no progress bar)."""
    cls = _pipeline_class(model.family, kind)
    with warnings.catch_warnings():
        # old scheduler configs (steps_offset=0) make the SD pipelines warn, then fix the config themselves
        warnings.simplefilter("ignore", FutureWarning)
        if model.family == "sdxl":
            pipe = cls(vae=model.vae, text_encoder=model.text_encoders[0], text_encoder_2=model.text_encoders[1],
                       tokenizer=model.tokenizers[0], tokenizer_2=model.tokenizers[1], unet=model.unet,
                       scheduler=scheduler, add_watermarker=False)
        else:
            pipe = cls(vae=model.vae, text_encoder=model.text_encoders[0], tokenizer=model.tokenizers[0],
                       unet=model.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def decode_latents(vae, latents: torch.Tensor, batch_size: int = 1) -> list[Image.Image]:
    """Latents -> PIL images, running the VAE in its own dtype and on its own device, `batch_size` at a time."""
    from diffusers.image_processor import VaeImageProcessor

    param = next(vae.parameters())
    latents = latents.to(param.device, param.dtype) / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        latents = latents + shift
    # one image at a time by default: decoding is where large images peak in memory (--vae_batch_size raises it)
    image = torch.cat([vae.decode(part, return_dict=False)[0] for part in latents.split(max(1, batch_size))])
    if not torch.isfinite(image).all():
        logger.warning("the VAE produced NaN/inf pixels (common for SDXL's VAE in fp16); try --no_half_vae")
    scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return VaeImageProcessor(vae_scale_factor=scale_factor).postprocess(image.float(), output_type="pil")


def _fit(image: Image.Image, width: int, height: int, mode: str = "RGB") -> Image.Image:
    image = image.convert(mode)
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class RenderOptions:
    """Run-wide settings of rendering (gen_img.py's flags); the defaults are plain sampling."""

    vae_batch_size: int = 1  # images per VAE decode
    noise: NoiseSettings | None = None  # noise offset / pyramid noise of the starting noise (txt2img)
    zero_terminal_snr: bool = False
    highres: HighresFix | None = None
    emb_normalize_mode: str = "original"


@dataclass
class ImageRenderer:
    """Renders ImageJobs with one model. `init_images`/`mask_images` switch to img2img/inpainting; image i of
    the run uses init_images[i % len] (as sd-scripts cycles through a folder of images)."""

    model: SamplingModel
    clip_skip: int | None = None
    max_embeddings_multiples: int = 3
    prompt_rewrite: Callable[[str], str] | None = None  # e.g. embedding trigger -> its N token names
    init_images: list[Image.Image] = field(default_factory=list)
    mask_images: list[Image.Image] = field(default_factory=list)
    options: RenderOptions = RenderOptions()
    on_first_stage: Callable[[ImageJob, Image.Image], None] | None = None  # highres fix: the small images

    def __post_init__(self):
        if self.mask_images and not self.init_images:
            raise UserError("--mask_path needs --image_path (inpainting paints into an image)")
        self.encoder = PromptEncoder(self.model.family, self.model.tokenizers, self.model.text_encoders,
                                     clip_skip=self.clip_skip, max_embeddings_multiples=self.max_embeddings_multiples,
                                     rewrite=self.prompt_rewrite, emb_normalize_mode=self.options.emb_normalize_mode)

    @property
    def kind(self) -> str:
        return "inpaint" if self.mask_images else "img2img" if self.init_images else "txt2img"

    def render(self, jobs: list[ImageJob], batch_size: int = 1) -> Iterator[tuple[ImageJob, Image.Image]]:
        """(job, image) for every job, batch by batch."""
        for batch in batches(jobs, max(1, batch_size)):
            yield from zip(batch, self.render_batch(batch))

    @torch.no_grad()
    def render_batch(self, batch: list[ImageJob]) -> list[Image.Image]:
        if self.options.highres is not None:
            return self._render_highres(batch)
        return self._decode(self._latents(batch))

    def _decode(self, latents: torch.Tensor) -> list[Image.Image]:
        return decode_latents(self.model.vae, latents, self.options.vae_batch_size)

    def _render_highres(self, batch: list[ImageJob]) -> list[Image.Image]:
        """Small first stage, upscaled (image or latents), then img2img at the full size (see highres.py)."""
        fix = self.options.highres
        first = [first_stage_job(job, fix) for job in batch]
        latents = self._latents(first)
        small = self._decode(latents) if (fix.save_first or not fix.latents_upscaling) else None
        if fix.save_first and self.on_first_stage is not None:
            for job, image in zip(first, small):
                self.on_first_stage(job, image)
        width, height = batch[0].width, batch[0].height
        if fix.latents_upscaling:
            factor = 2 ** (len(self.model.vae.config.block_out_channels) - 1)
            upscaled = torch.nn.functional.interpolate(latents.float(), size=(height // factor, width // factor),
                                                       mode="bilinear").to(latents.dtype)
        else:
            upscaled = [image.resize((width, height), Image.Resampling.LANCZOS) for image in small]
        return self._decode(self._latents([second_stage_job(job) for job in batch], init=upscaled, kind="img2img"))

    def _scheduler(self, job: ImageJob, full_latent_size: tuple[int, int]):
        model = self.model
        prediction = "v_prediction" if model.v_parameterization else None
        if job.gradual_latent is None:
            return make_sample_scheduler(job.sampler, model.noise_scheduler, prediction_type=prediction,
                                         zero_terminal_snr=self.options.zero_terminal_snr)
        from library.sampling.gradual_latent import scheduler_class

        if job.sampler != "euler_a":
            raise UserError(f"{job.source or 'prompt'}: Gradual Latent works only with the euler_a sampler (got {job.sampler}); "
                            "pass --sampler euler_a (or --ss euler_a in the prompt)")
        scheduler = make_sample_scheduler(job.sampler, model.noise_scheduler, prediction_type=prediction,
                                          zero_terminal_snr=self.options.zero_terminal_snr, scheduler_class=scheduler_class())
        scheduler.configure(job.gradual_latent, full_latent_size)
        return scheduler

    def _latents(self, batch: list[ImageJob], init=None, kind: str | None = None) -> torch.Tensor:
        """Run one pipeline call for `batch` and return its latents. `init` replaces the run's init images."""
        first = batch[0]
        model = self.model
        kind = kind or self.kind
        unet_dtype = compute_dtype_of(model.unet)  # not the float8 storage dtype of a --fp8_base U-Net
        factor = 2 ** (len(model.vae.config.block_out_channels) - 1)
        latent_size = (first.height // factor, first.width // factor)
        if self.options.zero_terminal_snr:
            check_zero_terminal_snr(first.sampler, f"{first.source or 'prompt'} sampler")
        if first.gradual_latent is not None and kind != "txt2img":
            raise UserError(f"{first.source or 'prompt'}: Gradual Latent is for txt2img; it cannot start from --image_path "
                            "images or run as the high-resolution fix's second stage")
        pipe = build_pipeline(model, self._scheduler(first, latent_size), kind)

        prompts = [job.prompt for job in batch]
        negatives = [job.negative_prompt for job in batch]
        guidance = contextlib.nullcontext()
        if first.negative_scale is None:
            embeds = self.encoder.encode(prompts, negatives, dtype=unet_dtype)
        else:
            if first.scale <= 1:
                raise UserError(f"{first.source or 'prompt'}: a negative scale needs a CFG scale above 1 (got {first.scale})")
            # the pipeline's "uncond" becomes the empty prompt; the negative prompt is added by the wrapped UNet
            chunks = self.encoder.num_chunks_for(prompts + negatives + [""])
            embeds = self.encoder.encode(prompts, [""] * len(batch), dtype=unet_dtype, num_chunks=chunks)
            negative = self.encoder.encode(prompts, negatives, dtype=unet_dtype, num_chunks=chunks)
            guidance = _negative_scale_guidance(model.unet, negative, first.scale, first.negative_scale)
        device = pipe._execution_device
        kwargs = {k: v.to(device) for k, v in embeds.as_pipeline_kwargs().items()}
        kwargs.update(
            height=first.height,
            width=first.width,
            num_inference_steps=first.steps,
            guidance_scale=first.scale,
            generator=[torch.Generator("cpu").manual_seed(job.seed) for job in batch],
            output_type="latent",
        )
        if model.family == "sdxl":
            kwargs.update(original_size=first.original_size, target_size=(first.height, first.width),
                          crops_coords_top_left=first.crop_top_left, negative_original_size=first.negative_original_size,
                          negative_target_size=(first.height, first.width),
                          negative_crops_coords_top_left=first.crop_top_left)
        noise = self.options.noise
        if kind == "txt2img" and ((noise is not None and noise.active) or first.gradual_latent is not None):
            shape = (model.unet.config.in_channels, *latent_size)
            latents = torch.cat([starting_noise(job.seed, shape, noise, dtype=unet_dtype) for job in batch])
            if first.gradual_latent is not None:
                from library.sampling.gradual_latent import shrink_start

                latents = shrink_start(latents, first.gradual_latent)
            kwargs["latents"] = latents.to(device)
        bridge = contextlib.nullcontext()
        if init is not None:
            kwargs["image"] = init.to(device) if torch.is_tensor(init) else init
            kwargs["strength"] = first.strength
            bridge = _vae_dtype_bridge(model.vae)
        elif self.init_images:
            kwargs["image"] = [_fit(self.init_images[j.index % len(self.init_images)], j.width, j.height) for j in batch]
            kwargs["strength"] = first.strength
            bridge = _vae_dtype_bridge(model.vae)  # the pipelines encode the image with the VAE
        if self.mask_images and kind == "inpaint":
            kwargs["mask_image"] = [_fit(self.mask_images[j.index % len(self.mask_images)], j.width, j.height, "L") for j in batch]
        with guidance, bridge, deep_shrink(model.unet, first.deep_shrink):
            return pipe(**kwargs).images

    def warn_truncated(self) -> None:
        for text in self.encoder.truncated:
            logger.warning("prompt cut at %d tokens (raise --max_embeddings_multiples to keep more): %.80s...",
                           75 * self.encoder.max_chunks, text)
        self.encoder.truncated.clear()


def generate_images(
    model: SamplingModel,
    specs: list[PromptSpec],
    *,
    defaults: GenerationDefaults = GenerationDefaults(),
    seed: int | None = None,
    images_per_prompt: int = 1,
    n_iter: int = 1,
    iter_same_seed: bool = False,
    batch_size: int = 1,
    clip_skip: int | None = None,
    max_embeddings_multiples: int = 3,
    prompt_rewrite: Callable[[str], str] | None = None,
) -> list[tuple[Image.Image, ImageJob]]:
    """Render every image of `specs` (see `plan_images` and `SeedSource` for counts and seeds)."""
    seeds = SeedSource(seed, single_image=len(specs) == 1 and images_per_prompt == 1, iter_same_seed=iter_same_seed)
    jobs = plan_images(specs, defaults, images_per_prompt=images_per_prompt, n_iter=n_iter, seeds=seeds)
    renderer = ImageRenderer(model, clip_skip=clip_skip, max_embeddings_multiples=max_embeddings_multiples,
                             prompt_rewrite=prompt_rewrite)
    results = [(image, job) for job, image in renderer.render(jobs, batch_size)]
    renderer.warn_truncated()
    return results

