"""What an embedding file holds, and how each layout in circulation is recognised from its keys.

Every layout is reduced to one representation: `vectors`, a dict from *slot* to an (N, dim) tensor.
A slot names the text encoder the vectors belong to, as the files themselves name it:

- `emb_params`: the one text encoder of SD 1.x (CLIP-L, 768) or SD 2.x (OpenCLIP-H, 1024);
- `clip_l` and `clip_g`: SDXL's two text encoders (CLIP-L 768 and OpenCLIP-bigG 1280), always both.

`recognize` is pure: it takes the mapping a container (safetensors, torch pickle, image chunk) decoded to and
returns the layout, vectors, stored name and step, or raises a UserError that says why the file is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from library.errors import UserError

logger = logging.getLogger(__name__)

SINGLE = "emb_params"
CLIP_L = "clip_l"
CLIP_G = "clip_g"
SD_SLOTS = (SINGLE,)
SDXL_SLOTS = (CLIP_L, CLIP_G)

# layout ids (EmbeddingFile.layout)
A1111 = "a1111"  # {string_to_token, string_to_param {'*': N x dim}, name, step, sd_checkpoint, sd_checkpoint_name}
LDM = "ldm"  # the paper's code: string_to_param is a pickled torch.nn.ParameterDict
EMB_PARAMS = "emb_params"  # {'emb_params': N x dim}: sd-scripts / A1111 safetensors
ONETRAINER = "onetrainer"  # {'emp_params': N x dim}
DIFFUSERS = "diffusers"  # {token: dim or N x dim}: learned_embeds.bin / .safetensors
SDXL = "sdxl"  # {'clip_l': N x 768, 'clip_g': N x 1280}
DIFFUSERS_SDXL_PAIR = "diffusers-sdxl-pair"  # learned_embeds.safetensors + learned_embeds_2.safetensors
XL_INVERSION = "xl-inversion"  # {'emb': 768, 'emb2': 1280}: the XL-Textual-Inversion notebook

LAYOUTS = {
    A1111: "AUTOMATIC1111 .pt (string_to_param '*')",
    LDM: "original textual_inversion/LDM .pt (string_to_param as nn.ParameterDict)",
    EMB_PARAMS: "sd-scripts/A1111 'emb_params'",
    ONETRAINER: "OneTrainer 'emp_params'",
    DIFFUSERS: "diffusers {token: vector}",
    SDXL: "SDXL clip_l + clip_g",
    DIFFUSERS_SDXL_PAIR: "diffusers SDXL pair (file + its _2 partner)",
    XL_INVERSION: "XL-Textual-Inversion notebook {'emb', 'emb2'}",
}

# the published models' text-encoder widths, used to say which family a file fits
FAMILY_DIMS = {"sd1": {SINGLE: 768}, "sd2": {SINGLE: 1024}, "sdxl": {CLIP_L: 768, CLIP_G: 1280}}

# keys of other model families' text encoders: such files are refused, not guessed at
_FOREIGN_KEYS = {
    "t5xxl": "T5-XXL (Flux, SD3, PixArt)",
    "t5": "T5 (Flux, SD3, PixArt)",
    "t5xl": "T5-XL",
    "umt5xxl": "UMT5-XXL (Wan)",
    "llama": "Llama (HiDream, HunyuanVideo)",
    "gemma": "Gemma (Sana)",
}


@dataclass
class EmbeddingFile:
    """One embedding as read from disk, whatever its layout."""

    path: Path  # the file given (for a diffusers SDXL pair: the first file)
    vectors: dict[str, torch.Tensor]  # slot -> (N, dim), in the file's dtype
    layout: str  # one of LAYOUTS
    container: str  # "safetensors", "torch-pickle", "png-text-chunk" or "image-pixels"
    token: str | None = None  # the name stored inside the file (A1111 'name', diffusers key), if any
    step: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    partner: Path | None = None  # the _2 file of a diffusers SDXL pair

    @property
    def trigger(self) -> str:
        """The word prompts use: the file name without extension, as in A1111, ComfyUI and sd-scripts."""
        return self.path.stem

    @property
    def num_vectors(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    @property
    def dims(self) -> dict[str, int]:
        return {slot: t.shape[-1] for slot, t in self.vectors.items()}

    @property
    def is_sdxl(self) -> bool:
        return set(self.vectors) == set(SDXL_SLOTS)

    def fitting_families(self) -> list[str]:
        """Published model families whose text encoders have exactly these widths."""
        return [family for family, dims in FAMILY_DIMS.items() if dims == self.dims]

    def vectors_for_slots(self, slots: tuple[str, ...] | list[str], dims: dict[str, int], *, source: str | None = None) -> dict[str, torch.Tensor]:
        """The (N, dim) vectors for a model whose text encoders are `slots` with widths `dims`.

        A single-encoder embedding whose width matches SDXL's CLIP-L goes to CLIP-L only, with zero vectors for
        CLIP-G and a warning. Any other mismatch is a UserError naming the file and both widths.
        """
        source = source or str(self.path)
        slots = tuple(slots)
        if slots == SD_SLOTS:
            if SINGLE in self.vectors and self.dims[SINGLE] == dims[SINGLE]:
                return {SINGLE: self.vectors[SINGLE]}
        elif slots == SDXL_SLOTS:
            if self.is_sdxl and self.dims == {CLIP_L: dims[CLIP_L], CLIP_G: dims[CLIP_G]}:
                return {CLIP_L: self.vectors[CLIP_L], CLIP_G: self.vectors[CLIP_G]}
            if SINGLE in self.vectors and self.dims[SINGLE] == dims[CLIP_L]:
                logger.warning(
                    "%s: a single-encoder (SD 1.x) embedding on SDXL: it applies to CLIP-L only; CLIP-G sees zero vectors for its tokens",
                    source,
                )
                vectors = self.vectors[SINGLE]
                return {CLIP_L: vectors, CLIP_G: vectors.new_zeros(vectors.shape[0], dims[CLIP_G])}
        else:
            raise ValueError(f"unknown slots {slots}; expected {SD_SLOTS} or {SDXL_SLOTS}")
        raise UserError(
            f"{source}: the embedding's vectors are {describe_dims(self.dims)} wide but the model's text encoder"
            f"{'s are' if len(slots) > 1 else ' is'} {describe_dims({s: dims[s] for s in slots})}; "
            f"{family_hint(self.dims)}; use an embedding trained for this model family"
        )


def describe_dims(dims: dict[str, int]) -> str:
    """`768` for one encoder, `clip_l 768 + clip_g 1280` for two."""
    if set(dims) == {SINGLE}:
        return str(dims[SINGLE])
    return " + ".join(f"{slot} {dim}" for slot, dim in dims.items())


def family_hint(dims: dict[str, int]) -> str:
    """Which published family these widths belong to, in words."""
    families = [f for f, d in FAMILY_DIMS.items() if d == dims]
    names = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
    if families:
        return f"this file is for {names[families[0]]}"
    return "no published SD 1.x (768), SD 2.x (1024) or SDXL (768 + 1280) model has these widths"


@dataclass
class Recognized:
    """What `recognize` found in a decoded container."""

    layout: str
    vectors: dict[str, torch.Tensor]
    token: str | None = None
    step: int | None = None
    extras: dict[str, str] = field(default_factory=dict)  # other plain values, e.g. A1111's sd_checkpoint
    warnings: list[str] = field(default_factory=list)


def recognize(data: object, source: str) -> Recognized:
    """Find the layout of a decoded embedding file and pull out its vectors (see LAYOUTS)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: holds a {type(data).__name__}, not the dict of tensors an embedding file holds")
    if not data:
        raise UserError(f"{source}: holds no tensors (an empty dict)")
    keys = set(data)
    foreign = sorted(k for k in keys if isinstance(k, str) and k.lower() in _FOREIGN_KEYS)
    if foreign:
        what = ", ".join(f"'{k}' {_shape_of(data[k])} = {_FOREIGN_KEYS[k.lower()]}" for k in foreign)
        raise UserError(
            f"{source}: an embedding for another model family's text encoder ({what}); "
            "only CLIP embeddings for SD 1.x, SD 2.x and SDXL can be used here"
        )
    if "string_to_param" in data:
        return _recognize_a1111(data, source)
    if CLIP_L in keys or CLIP_G in keys:
        return _recognize_sdxl(data, source)
    if "emb_params" in keys:
        return _single(EMB_PARAMS, data, "emb_params", source, token=None)
    if "emp_params" in keys or "emp_params_out" in keys:
        return _recognize_onetrainer(data, source)
    if keys == {"emb", "emb2"}:
        vectors = {CLIP_L: _as_matrix(data["emb"], "emb", source), CLIP_G: _as_matrix(data["emb2"], "emb2", source)}
        note = (
            "written by the XL-Textual-Inversion notebook, which overwrote an existing word's embedding; "
            "here the file name is the trigger word"
        )
        return Recognized(XL_INVERSION, _check_same_count(vectors, source), warnings=[note])
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if len(data) == 1 and len(tensors) == 1:
        (token, tensor), = tensors.items()
        return Recognized(DIFFUSERS, {SINGLE: _as_matrix(tensor, str(token), source)}, token=str(token))
    listing = ", ".join(f"'{k}' {_shape_of(v)}" for k, v in list(data.items())[:8])
    raise UserError(
        f"{source}: not a known embedding layout (keys: {listing}); readable layouts hold string_to_param, "
        "emb_params, emp_params, clip_l + clip_g, or exactly one tensor keyed by its token"
    )


def _recognize_a1111(data: dict, source: str) -> Recognized:
    params = data["string_to_param"]
    layout = A1111
    if isinstance(params, torch.nn.ParameterDict):
        # unpickled from torch 1.x files, a ParameterDict lacks `_keys`; its parameters are in `_parameters`
        params = params.__dict__.get("_parameters", {})
        layout = LDM
    if not isinstance(params, dict) or not params:
        raise UserError(f"{source}: string_to_param is empty or not a mapping ({type(params).__name__})")
    if len(params) != 1:
        raise UserError(f"{source}: string_to_param holds {len(params)} terms ({', '.join(map(str, params))}); an embedding file holds one")
    (key, tensor), = params.items()
    vectors = {SINGLE: _as_matrix(tensor, f"string_to_param[{key!r}]", source)}
    name = data.get("name")
    extras = {k: str(data[k]) for k in ("sd_checkpoint", "sd_checkpoint_name") if data.get(k) is not None}
    return Recognized(layout, vectors, token=name if isinstance(name, str) else None, step=_as_int(data.get("step")), extras=extras)


def _recognize_sdxl(data: dict, source: str) -> Recognized:
    missing = [slot for slot in SDXL_SLOTS if slot not in data]
    if missing:
        raise UserError(
            f"{source}: has {' and '.join(s for s in SDXL_SLOTS if s in data)} but no {missing[0]}; "
            "an SDXL embedding holds both clip_l (768) and clip_g (1280)"
        )
    vectors = _check_same_count({slot: _as_matrix(data[slot], slot, source) for slot in SDXL_SLOTS}, source)
    ignored = sorted(str(k) for k in data if k not in SDXL_SLOTS)
    warnings = [f"ignored keys beside clip_l/clip_g: {', '.join(ignored)}"] if ignored else []
    return Recognized(SDXL, vectors, warnings=warnings)


def _recognize_onetrainer(data: dict, source: str) -> Recognized:
    if "emp_params" not in data:
        raise UserError(
            f"{source}: holds only OneTrainer's 'emp_params_out', an output embedding that OneTrainer adds after the "
            "text encoder; it is not a token embedding and cannot be used as one"
        )
    found = _single(ONETRAINER, data, "emp_params", source, token=None)
    if "emp_params_out" in data:
        found.warnings.append("ignored 'emp_params_out' (OneTrainer's output embedding); the token embedding 'emp_params' is used")
    return found


def _single(layout: str, data: dict, key: str, source: str, token: str | None) -> Recognized:
    others = sorted(str(k) for k in data if k != key and k != "emp_params_out")
    warnings = [f"ignored keys beside {key}: {', '.join(others)}"] if others else []
    return Recognized(layout, {SINGLE: _as_matrix(data[key], key, source)}, token=token, warnings=warnings)


def _as_matrix(value: object, key: str, source: str) -> torch.Tensor:
    """An (N, dim) floating tensor on the CPU; a 1-D vector becomes (1, dim)."""
    if not isinstance(value, torch.Tensor):
        raise UserError(f"{source}: '{key}' is a {type(value).__name__}, not a tensor")
    tensor = value.detach()  # a Parameter becomes a plain tensor
    if not tensor.is_floating_point():
        raise UserError(f"{source}: '{key}' holds {tensor.dtype} values, not floating-point vectors")
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2:
        raise UserError(f"{source}: '{key}' has shape {tuple(tensor.shape)}; an embedding is N x dim")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise UserError(f"{source}: '{key}' has shape {tuple(tensor.shape)}: no vectors")
    return tensor.cpu().contiguous()


def _check_same_count(vectors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    counts = {slot: t.shape[0] for slot, t in vectors.items()}
    if len(set(counts.values())) > 1:
        raise UserError(f"{source}: the encoders' vector counts differ ({', '.join(f'{s} {n}' for s, n in counts.items())}); they must be equal")
    return vectors


def _as_int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _shape_of(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    return type(value).__name__
