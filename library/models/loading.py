"""Load an SD 1.x / 2.x / SDXL model for training or generation, offline.

`load_models` accepts what sd-scripts' --pretrained_model_name_or_path accepts: a diffusers model directory,
a single-file original-format checkpoint (.safetensors / .ckpt) or a Hugging Face Hub id (online only).
Single files go through diffusers' own single-file converters with a local config directory: one bundled
in library/resources/model_configs for the standard architectures, the one embedded in the file by
original_format.save_single_file (tiny test models), or `config_dir`. Tokenizers are always the bundled ones.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from library.atomic import atomic_dir
from library.errors import UserError
from library.models.checkpoint_files import SINGLE_FILE_SUFFIXES, Checkpoint, read_checkpoint, write_embedded_config
from library.models.detection import FAMILY_NAMES, detect_checkpoint, detect_diffusers_dir, resolve
from library.tokenizers import load_bundled_tokenizer

logger = logging.getLogger(__name__)

BUNDLED_CONFIGS = Path(__file__).resolve().parents[1] / "resources" / "model_configs"
EOS_TOKEN_ID = 49407  # <|endoftext|> in the CLIP vocabulary every SD text encoder uses
MODEL_FLAG = "--pretrained_model_name_or_path"
_TEXT_ENCODER_PREFIXES = ("cond_stage_model.", "conditioner.")


class _NoEmptyFp32ModulesWarning(logging.Filter):
    """diffusers (0.36-0.42) warns on every `model.to(dtype)` that "modules should be kept in float32: []",
    even when the list is empty; that case says nothing, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_NoEmptyFp32ModulesWarning())


@dataclass
class LoadedModels:
    family: str  # "sd1" | "sd2" | "sdxl"
    v_parameterization: bool
    tokenizers: list  # [CLIPTokenizer]; SDXL: [CLIP-L tokenizer, OpenCLIP-G tokenizer]
    text_encoders: list  # [CLIPTextModel]; SDXL: [CLIPTextModel, CLIPTextModelWithProjection]
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler  # for training; prediction_type follows v_parameterization
    source: str  # the directory, file or hub id that was loaded


def bundled_config_dir(family: str, v_parameterization: bool) -> Path:
    """The shipped diffusers config directory of a standard architecture."""
    name = {"sd1": "sd15", "sdxl": "sdxl-base"}.get(family) or ("sd2-768-v" if v_parameterization else "sd2-512")
    return BUNDLED_CONFIGS / name


def load_models(pretrained_model_name_or_path: str, *, v2: bool | None = None, v_parameterization: bool | None = None,
                sdxl: bool | None = None, vae: str | None = None, tokenizer_cache_dir: str | None = None,
                dtype: torch.dtype = torch.float32, config_dir: str | None = None, disable_mmap: bool = False) -> LoadedModels:
    """Load tokenizers, text encoders, VAE, UNet and the training noise scheduler; on CPU, eval, frozen.

    v2 / sdxl / v_parameterization: None detects; see detection.resolve for how given values override.
    vae: a separate VAE (.safetensors/.ckpt file, diffusers directory or hub id) replacing the model's.
    config_dir: diffusers config directory for a single-file checkpoint of a non-standard architecture.
    disable_mmap: read .safetensors files with plain reads instead of memory-mapping them.
    """
    source = str(pretrained_model_name_or_path)
    path = Path(source).expanduser()
    flags = dict(v2=v2, sdxl=sdxl, v_parameterization=v_parameterization, disable_mmap=disable_mmap)
    with _quiet_progress_bars():
        if path.is_dir():
            parts = _load_diffusers(str(path.resolve()), path, local_only=True, dtype=dtype, **flags)
        elif path.is_file():
            parts = _load_single_file(path, dtype=dtype, config_dir=config_dir, **flags)
        elif _looks_like_path(source):
            raise UserError(f"{MODEL_FLAG} {source}: no such file or directory")
        else:
            parts = _load_diffusers(source, _download_configs(source, MODEL_FLAG), local_only=False, dtype=dtype, **flags)
        family, v = parts["family"], parts["v"]
        if vae is not None:
            parts["vae"] = load_vae(vae, like=parts["vae"], dtype=dtype, disable_mmap=disable_mmap)
    for model in [parts["unet"], parts["vae"], *parts["text_encoders"]]:
        model.eval().requires_grad_(False)
    for text_encoder in parts["text_encoders"]:
        force_eos_token_id(text_encoder)
    prediction_type = "v_prediction" if v else "epsilon"
    return LoadedModels(
        family=family,
        v_parameterization=v,
        tokenizers=load_tokenizers(family, tokenizer_cache_dir),
        text_encoders=parts["text_encoders"],
        vae=parts["vae"],
        unet=parts["unet"],
        noise_scheduler=DDPMScheduler.from_config(parts["scheduler_config"], prediction_type=prediction_type),
        source=parts["source"],
    )


# --- diffusers directories and hub ids ---------------------------------------------------------------------


def _load_diffusers(source: str, config_dir: Path, *, local_only: bool, dtype, v2, sdxl, v_parameterization,
                    disable_mmap: bool = False) -> dict:
    """Components with from_pretrained from a local directory or (online) a hub repo whose configs are in config_dir."""
    where = f"{MODEL_FLAG} {source}"
    if local_only and not ((config_dir / "model_index.json").is_file() or (config_dir / "unet" / "config.json").is_file()):
        raise UserError(f"{where}: not a diffusers model directory (no model_index.json or unet/config.json); "
                        "pass the model's directory itself or a .safetensors/.ckpt file")
    detection = detect_diffusers_dir(config_dir)
    family, v = resolve(detection, where, v2=v2, sdxl=sdxl, v_parameterization=v_parameterization, single_file=False)
    load = dict(source=source, local_only=local_only, dtype=dtype, where=where, disable_mmap=disable_mmap)
    text_encoders = [_from_pretrained(CLIPTextModel, "text_encoder", **load)]
    if family == "sdxl":
        text_encoders.append(_from_pretrained(CLIPTextModelWithProjection, "text_encoder_2", **load))
    scheduler_dir = config_dir / "scheduler"
    if not (scheduler_dir / "scheduler_config.json").is_file():
        scheduler_dir = bundled_config_dir(family, v) / "scheduler"
    return dict(
        family=family, v=v, source=source, text_encoders=text_encoders,
        unet=_from_pretrained(UNet2DConditionModel, "unet", **load),
        vae=_from_pretrained(AutoencoderKL, "vae", **load),
        scheduler_config=DDPMScheduler.load_config(str(scheduler_dir)),
    )


def _from_pretrained(cls, subfolder: str | None, *, source: str, local_only: bool, dtype, where: str,
                     disable_mmap: bool = False):
    kwargs = dict(local_files_only=local_only)
    if disable_mmap:  # diffusers and transformers both read whole .safetensors files instead of mapping them
        kwargs["disable_mmap"] = True
    if subfolder:
        kwargs["subfolder"] = subfolder
    # transformers 5 names the argument dtype, diffusers torch_dtype
    kwargs["dtype" if cls in (CLIPTextModel, CLIPTextModelWithProjection) else "torch_dtype"] = dtype
    variant = _weights_variant(Path(source) / (subfolder or "")) if local_only else None
    if variant:
        kwargs["variant"] = variant
    is_transformers = cls in (CLIPTextModel, CLIPTextModelWithProjection)
    if is_transformers:
        kwargs["output_loading_info"] = True  # transformers would silently initialise missing weights
    what = f"its {subfolder}" if subfolder else "the model"
    if local_only:
        _check_weight_files(Path(source) / (subfolder or ""), where)
    if local_only and not is_transformers and not variant:
        # one copy of the weights in memory, already in `dtype` (diffusers would hold the whole file first)
        from library.models.low_memory import IncompleteFile, load_diffusers_model_low_memory

        try:
            model = load_diffusers_model_low_memory(cls, Path(source) / (subfolder or ""), dtype)
        except IncompleteFile as err:
            raise UserError(f"{where}: {err}") from None
        except Exception:  # anything unusual: from_pretrained below loads it or explains why not
            model = None
        if model is not None:
            _check_complete(model, subfolder or cls.__name__, where)
            return model
    try:
        model = cls.from_pretrained(source, **kwargs)
    except Exception as err:
        from library.embeddings.safe_pickle import is_refused_pickle, refusal

        if is_refused_pickle(err):  # same refusal as every other pickle, naming the file
            pickles = sorted(p.name for p in (Path(source) / (subfolder or "")).glob("*.bin")) if local_only else []
            file = "/".join(filter(None, [subfolder, pickles[0] if pickles else None]))
            raise UserError(refusal(f"{where}: {file}" if file else where, err)) from None
        if isinstance(err, (OSError, ValueError, RuntimeError)):
            raise UserError(f"{where}: cannot load {what} ({_short(err)})") from None
        raise
    if is_transformers:
        model, info = model
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise UserError(f"{where}: {what} lacks {len(missing)} weights (e.g. {missing[0]}); "
                            "the files are incomplete or not a CLIP text encoder")
    _check_complete(model, subfolder or cls.__name__, where)
    return model


def _check_weight_files(folder: Path, where: str) -> None:
    """Every .safetensors file of a component folder must be as long as its header says (a cut-off copy is refused)."""
    from library.models.low_memory import IncompleteFile, check_safetensors_complete

    if not folder.is_dir():
        return
    for file in sorted(folder.glob("*.safetensors")):
        try:
            check_safetensors_complete(file)
        except IncompleteFile as err:
            raise UserError(f"{where}: {err}") from None


def _weights_variant(folder: Path) -> str | None:
    """'fp16' when a diffusers folder holds only fp16-variant weights (e.g. diffusion_pytorch_model.fp16.safetensors)."""
    if not folder.is_dir():
        return None
    names = [p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    if names and all(".fp16." in n for n in names):
        return "fp16"
    return None


def _looks_like_path(value: str) -> bool:
    """Hub ids are `owner/name`; anything else that does not exist is a mistyped path."""
    if Path(value).suffix.lower() in SINGLE_FILE_SUFFIXES:
        return True
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) is None


def _hub_offline() -> bool:
    from huggingface_hub import constants

    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline() if callable(is_offline) else constants.HF_HUB_OFFLINE)


def _download_configs(repo_id: str, flag: str) -> Path:
    """The hub repo's JSON configs (small) in the local cache, or one clear line on what to pass instead."""
    instead = ("Pass a local diffusers model directory (with model_index.json) or a .safetensors/.ckpt "
               "checkpoint file instead.")
    if _hub_offline():
        raise UserError(f"{flag} {repo_id}: not a local file or directory, and downloading it as a Hugging Face Hub id "
                        f"is impossible offline (HF_HUB_OFFLINE is set). {instead}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["model_index.json", "*/config.json",
                                                               "scheduler/scheduler_config.json"]))
    except Exception as err:  # network, auth and not-found errors all mean the same to the user
        raise UserError(f"{flag} {repo_id}: not a local file or directory, and downloading it as a Hugging Face Hub "
                        f"id failed ({_short(err)}). {instead}") from err


# --- single-file checkpoints -------------------------------------------------------------------------------


def _load_single_file(path: Path, *, dtype, config_dir, v2, sdxl, v_parameterization, disable_mmap: bool = False) -> dict:
    where = f"{MODEL_FLAG} {path}"
    checkpoint = read_checkpoint(path, MODEL_FLAG, mmap=not disable_mmap)
    _normalize_text_encoder_keys(checkpoint.state_dict)
    shapes = {k: tuple(t.shape) for k, t in checkpoint.state_dict.items()}
    try:
        detection = detect_checkpoint(shapes, checkpoint.metadata)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    family, v = resolve(detection, where, v2=v2, sdxl=sdxl, v_parameterization=v_parameterization, single_file=True)
    with tempfile.TemporaryDirectory(prefix="ti_model_config_") as tmp:
        if config_dir is not None:
            configs, described = Path(config_dir), f"the config directory {config_dir}"
        elif (embedded := write_embedded_config(checkpoint.metadata, Path(tmp))) is not None:
            configs, described = embedded, "the config embedded in the file"
        else:
            configs = bundled_config_dir(family, v)
            described = f"the standard {FAMILY_NAMES[family]} architecture (bundled config {configs.name})"
        _require_configs(configs, family, where)
        # each component takes its keys out of the checkpoint, so tensors are freed as soon as they are loaded
        parts = _split_components(checkpoint)
        load = dict(configs=configs, dtype=dtype, where=where, described=described)
        unet = _single_file_model(UNet2DConditionModel, parts.pop("unet"), "unet", **load)
        vae = _single_file_model(AutoencoderKL, parts.pop("vae"), "vae", **load)
        text_sd = parts.pop("text")
        text_encoders = [_single_file_text_encoder(CLIPTextModel, text_sd, "text_encoder", **load)]
        if family == "sdxl":
            text_encoders.append(_single_file_text_encoder(CLIPTextModelWithProjection, text_sd, "text_encoder_2", **load))
        scheduler_dir = configs / "scheduler"
        if not (scheduler_dir / "scheduler_config.json").is_file():
            scheduler_dir = bundled_config_dir(family, v) / "scheduler"
        scheduler_config = DDPMScheduler.load_config(str(scheduler_dir))
    return dict(family=family, v=v, source=str(path.resolve()), unet=unet, vae=vae, text_encoders=text_encoders,
                scheduler_config=scheduler_config)


def _normalize_text_encoder_keys(state_dict: dict) -> None:
    # some old SD1 checkpoints lack the `text_model.` level under cond_stage_model.transformer
    old = "cond_stage_model.transformer."
    for key in [k for k in state_dict if k.startswith(old) and not k.startswith(old + "text_model.")]:
        state_dict[old + "text_model." + key[len(old):]] = state_dict.pop(key)


def _split_components(checkpoint: Checkpoint) -> dict[str, dict]:
    sd = checkpoint.state_dict
    parts = {"unet": {}, "vae": {}, "text": {}}
    for key in list(sd):
        if key.startswith("model.diffusion_model."):
            parts["unet"][key] = sd.pop(key)
        elif key.startswith("first_stage_model."):
            parts["vae"][key] = sd.pop(key)
        elif key.startswith(_TEXT_ENCODER_PREFIXES):
            parts["text"][key] = sd.pop(key)
    return parts


def _require_configs(configs: Path, family: str, where: str) -> None:
    needed = ["unet/config.json", "vae/config.json", "text_encoder/config.json"]
    if family == "sdxl":
        needed.append("text_encoder_2/config.json")
    missing = [n for n in needed if not (configs / n).is_file()]
    if missing:
        raise UserError(f"{where}: the config directory {configs} lacks {', '.join(missing)} "
                        "(it must be laid out like a diffusers model directory)")


def _single_file_model(cls, state_dict: dict, subfolder: str, *, configs: Path, dtype, where: str, described: str):
    if not state_dict:
        raise UserError(f"{where}: the checkpoint has no {subfolder} weights; it is not a complete model")
    try:
        model = cls.from_single_file(state_dict, config=str(configs), subfolder=subfolder, local_files_only=True,
                                     torch_dtype=dtype)
    except (ValueError, KeyError, RuntimeError) as err:
        raise _mismatch(where, subfolder, described, err) from err
    _check_complete(model, subfolder, where)
    return model


def _single_file_text_encoder(cls, state_dict: dict, subfolder: str, *, configs: Path, dtype, where: str, described: str):
    # diffusers' pipeline loader uses this function for the CLIP components of a single file
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

    if not state_dict:
        raise UserError(f"{where}: the checkpoint has no text encoder weights; it is not a complete model")
    try:
        model = create_diffusers_clip_model_from_ldm(cls, state_dict, subfolder=subfolder, config=str(configs),
                                                     torch_dtype=dtype, local_files_only=True)
    except (ValueError, KeyError, RuntimeError) as err:
        raise _mismatch(where, subfolder, described, err) from err
    _check_complete(model, subfolder, where)
    return model


def _mismatch(where: str, component: str, described: str, err: Exception) -> UserError:
    detail = _short(err)
    if "expected shape" in detail:  # diffusers' message is long; keep the parameter and the two shapes
        match = re.search(r"because (\S+) expected shape (\S+ ?\S*), but got (\S+ ?\S*?)\.", str(err))
        if match:
            detail = f"{match.group(1)}: expected {match.group(2)}, got {match.group(3)}"
    return UserError(f"{where}: its {component} weights do not fit {described} ({detail}). For a non-standard "
                     "architecture pass a diffusers config directory (config_dir); otherwise the file is not a "
                     "complete SD 1.x/2.x/SDXL model")


def _check_complete(model: torch.nn.Module, component: str, where: str) -> None:
    """Weights the checkpoint did not provide stay on the meta device; say so instead of failing later."""
    missing = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if missing:
        raise UserError(f"{where}: the checkpoint lacks {len(missing)} {component} weights (e.g. {missing[0]}); "
                        "the file is incomplete or not a full model")


# --- VAE, tokenizers, text-encoder fix-up -------------------------------------------------------------------


def load_vae(value: str, *, like: AutoencoderKL, dtype: torch.dtype = torch.float32,
             disable_mmap: bool = False) -> AutoencoderKL:
    """A separate VAE (--vae): a single file read with `like`'s config, a diffusers directory or a hub id."""
    where = f"--vae {value}"
    path = Path(value).expanduser()
    load = dict(local_only=True, dtype=dtype, where=where, disable_mmap=disable_mmap)
    if path.is_file():
        checkpoint = read_checkpoint(path, "--vae", mmap=not disable_mmap)
        with tempfile.TemporaryDirectory(prefix="ti_vae_config_") as tmp:
            configs = write_embedded_config(checkpoint.metadata, Path(tmp))
            if configs is None:
                # the model's own VAE config: same architecture, and the right latent scaling for the family
                configs = Path(tmp)
                like.save_config(str(configs / "vae"))
            state_dict = {k: v for k, v in checkpoint.state_dict.items()
                          if not k.startswith(("model.diffusion_model.",) + _TEXT_ENCODER_PREFIXES)}
            return _single_file_model(AutoencoderKL, state_dict, "vae", configs=configs, dtype=dtype, where=where,
                                      described="the model's VAE architecture")
    if path.is_dir():
        if (path / "vae" / "config.json").is_file():
            return _from_pretrained(AutoencoderKL, "vae", source=str(path), **load)
        if (path / "config.json").is_file():
            return _from_pretrained(AutoencoderKL, None, source=str(path), **load)
        raise UserError(f"{where}: not a VAE directory (no config.json or vae/config.json)")
    if _looks_like_path(value):
        raise UserError(f"{where}: no such file or directory")
    _download_configs(value, "--vae")
    return _from_pretrained(AutoencoderKL, None, source=value, local_only=False, dtype=dtype, where=where,
                            disable_mmap=disable_mmap)


def load_tokenizers(family: str, cache_dir: str | None = None) -> list[CLIPTokenizer]:
    """The bundled tokenizers for a family. With cache_dir (--tokenizer_cache_dir), a copy is kept and read there."""
    styles = {"sd1": ["sd1"], "sd2": ["sd2"], "sdxl": ["sd1", "sd2"]}[family]
    return [_tokenizer(style, cache_dir) for style in styles]


def _tokenizer(style: str, cache_dir: str | None) -> CLIPTokenizer:
    if cache_dir is None:
        return load_bundled_tokenizer(style)
    local = Path(cache_dir).expanduser() / style
    try:
        if (local / "tokenizer_config.json").is_file():
            return CLIPTokenizer.from_pretrained(str(local))
        tokenizer = load_bundled_tokenizer(style)
        with atomic_dir(local) as tmp:
            tokenizer.save_pretrained(str(tmp))
        return tokenizer
    except OSError as err:
        raise UserError(f"--tokenizer_cache_dir {cache_dir}: cannot read or write {local} ({_short(err)})") from err


def force_eos_token_id(text_encoder: torch.nn.Module) -> None:
    """Make the pooled output the <|endoftext|> position, whatever the config says.

    Many published configs say eos_token_id=2, which makes transformers pool at argmax(input_ids); new
    textual-inversion tokens (ids >= 49408) then win the argmax and SDXL's pooled embedding is wrong.
    """
    for module in text_encoder.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "eos_token_id"):
            config.eos_token_id = EOS_TOKEN_ID
        if hasattr(module, "eos_token_id"):  # CLIPTextModel / CLIPTextTransformer cache it at construction
            module.eos_token_id = EOS_TOKEN_ID


@contextlib.contextmanager
def _quiet_progress_bars():
    """No per-file 'Loading weights' bars from transformers/diffusers while we load."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _ in states:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in states:
            if enabled:
                module.enable_progress_bar()


def _short(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__
