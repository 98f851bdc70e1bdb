"""Model-family adapters: the only place where SD 1.x/2.x and SDXL training differ.

An adapter says which embedding-file slots the text encoders fill, turns a batch's captions (and, for SDXL, its
size/crop conditioning) into the UNet's keyword arguments, and answers every other SD-vs-SDXL question of a run:
which script trains it, the default resolution, the modelspec architecture, which encoders train, its name in
the summary. Setup, loop and saving ask the adapter; none of them compares family names.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import torch

from library.errors import UserError
from library.text_conditioning import encode_sd, encode_sdxl, sdxl_time_ids, tokenize_chunks

SD_SCRIPT = "train_textual_inversion.py"
SDXL_SCRIPT = "sdxl_train_textual_inversion.py"


@dataclass(frozen=True)
class ConditioningSettings:
    """How captions become text conditioning: the flags `unet_conditioning` reads, read once."""

    max_token_length: int | None = None  # 75, 150 or 225 tokens; None is 75
    clip_skip: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ConditioningSettings":
        return cls(max_token_length=args.max_token_length, clip_skip=args.clip_skip)

    def as_kwargs(self) -> dict:
        """The keyword arguments of an adapter's `unet_conditioning`."""
        return asdict(self)


@dataclass(frozen=True)
class SDFamily:
    """SD 1.x and 2.x: one CLIP text encoder; files hold `emb_params`."""

    model_family: str = "sd1"  # "sd1" or "sd2", as model detection names it
    name: str = "sd"
    slots: tuple[str, ...] = ("emb_params",)
    script: str = SD_SCRIPT
    kind: str = "SD 1.x/2.x"
    load_as_sdxl: bool | None = False  # load_models' `sdxl`: False refuses an SDXL file from its keys, before loading weights
    default_resolution: tuple[int, int] = (512, 512)  # (width, height) when no dataset sets one

    @property
    def display_name(self) -> str:
        return f"SD {self.model_family[-1]}.x"

    def modelspec_architecture(self, v_parameterization: bool) -> str:
        """sd-scripts' `modelspec.architecture` value (before its `/textual-inversion` suffix)."""
        if self.model_family == "sd2":
            return "stable-diffusion-v2-768-v" if v_parameterization else "stable-diffusion-v2-512"
        return "stable-diffusion-v1"

    def trained_encoders(self, ti_text_encoders: str | None) -> list[bool]:
        """The one text encoder always trains (SD has no --ti_text_encoders choice)."""
        return [True]

    def unet_conditioning(self, tokenizers, text_encoders, captions: list[str], batch: dict, *, max_token_length=None, clip_skip=None) -> dict:
        ids = tokenize_chunks(tokenizers[0], captions, max_token_length)
        return {"encoder_hidden_states": encode_sd(text_encoders[0], ids, clip_skip)}


    def full_pipeline(self, parts: dict, encoders: list, tokenizers: list, vectors: dict[str, torch.Tensor], token: str):
        """A diffusers pipeline of the frozen `parts` (vae, unet, scheduler) whose text encoder holds `token`."""
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(text_encoder=encoders[0], tokenizer=tokenizers[0], safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False, **parts)
        pipe.load_textual_inversion(vectors["emb_params"], token=token)
        return pipe

@dataclass(frozen=True)
class SDXLFamily:
    """SDXL: CLIP-L and OpenCLIP bigG; files hold `clip_l` and `clip_g`; pooled text and size/crop ids."""

    model_family: str = "sdxl"
    name: str = "sdxl"
    slots: tuple[str, ...] = ("clip_l", "clip_g")
    script: str = SDXL_SCRIPT
    kind: str = "SDXL"
    load_as_sdxl: bool | None = None  # detect from the file; a non-SDXL model is refused after loading
    default_resolution: tuple[int, int] = (1024, 1024)

    @property
    def display_name(self) -> str:
        return "SDXL"

    def modelspec_architecture(self, v_parameterization: bool) -> str:
        return "stable-diffusion-xl-v1-base"

    def trained_encoders(self, ti_text_encoders: str | None) -> list[bool]:
        """--ti_text_encoders l, g or l,g (default both): which of CLIP-L and bigG get trained vectors."""
        if not ti_text_encoders:
            return [True, True]
        wanted = {part.strip().lower() for part in ti_text_encoders.split(",") if part.strip()}
        unknown = wanted - {"l", "g"}
        if unknown or not wanted:
            raise UserError(f"--ti_text_encoders takes 'l', 'g' or 'l,g' (got {ti_text_encoders!r})")
        return ["l" in wanted, "g" in wanted]

    def unet_conditioning(self, tokenizers, text_encoders, captions: list[str], batch: dict, *, max_token_length=None, clip_skip=None) -> dict:
        ids = [tokenize_chunks(tok, captions, max_token_length) for tok in tokenizers]
        hidden, pooled = encode_sdxl(text_encoders, ids, eos_token_id=tokenizers[0].eos_token_id)
        time_ids = sdxl_time_ids(batch["original_sizes_hw"], batch["crop_top_lefts"], batch["target_sizes_hw"])
        return {
            "encoder_hidden_states": hidden,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids.to(pooled.device, pooled.dtype)},
        }

    def full_pipeline(self, parts: dict, encoders: list, tokenizers: list, vectors: dict[str, torch.Tensor], token: str):
        """A diffusers SDXL pipeline of the frozen `parts`; each encoder with a trained slot gets `token`."""
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline(text_encoder=encoders[0], text_encoder_2=encoders[1], tokenizer=tokenizers[0],
                                         tokenizer_2=tokenizers[1], **parts)
        for slot, encoder, tokenizer in zip(self.slots, (pipe.text_encoder, pipe.text_encoder_2), (pipe.tokenizer, pipe.tokenizer_2)):
            if slot in vectors:
                pipe.load_textual_inversion(vectors[slot], token=token, text_encoder=encoder, tokenizer=tokenizer)
        return pipe


def family_for(model_family: str):
    """The adapter for a loaded model's family ("sd1", "sd2" or "sdxl")."""
    return SDXLFamily() if model_family == "sdxl" else SDFamily(model_family=model_family)


def family_for_script(sdxl: bool):
    """The adapter a training script expects before its model is loaded (its version is known only after loading)."""
    return SDXLFamily() if sdxl else SDFamily()


def to_device(conditioning: dict, device: torch.device) -> dict:
    return {k: (to_device(v, device) if isinstance(v, dict) else v.to(device)) for k, v in conditioning.items()}
