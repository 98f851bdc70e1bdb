"""The trainer's command-line flags: sd-scripts' names, defaults and meanings (docs/training_options.md lists them).

`add_model_arguments`, `add_training_arguments` and `add_textual_inversion_arguments` each add one group;
dataset flags come from `library.dataset.arguments`. A flag that the parser already has is skipped rather than
redefined, so groups compose in any order without argparse conflicts. Which flags need or exclude each other is
checked in one place, `library.training.flag_rules`; `library.training.parser.build_parser` assembles the groups.
"""

from __future__ import annotations

import argparse
import logging

from library.training.loss import HUBER_SCHEDULES, LOSS_TYPES
from library.training.lr_schedulers import int_or_ratio, parse_learning_rate
from library.training.flag_groups import group_adder as _adder

logger = logging.getLogger(__name__)

SAMPLE_SAMPLERS = (
    "ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver", "dpmsolver++", "dpmsingle",
    "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a",
)  # fmt: skip
# sd-scripts' choices; which of them this PyTorch really has is checked when --torch_compile uses one (flag_rules)
DYNAMO_BACKENDS = (
    "eager", "aot_eager", "inductor", "aot_ts_nvfuser", "nvprims_nvfuser", "cudagraphs", "ofi", "fx2trt", "onnxrt",
    "tensort", "ipex", "tvm",
)  # fmt: skip


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The base model to train against (sd-scripts' add_sd_models_arguments, plus --vae)."""
    add = _adder(parser, "model")
    add("--pretrained_model_name_or_path", type=str, default=None,
        help="base model: a diffusers model directory or a single .safetensors/.ckpt checkpoint")
    add("--v2", action="store_true", help="the model is Stable Diffusion 2.x")
    add("--v_parameterization", action="store_true", help="train with v-prediction (SD 2.x 768-v models)")
    add("--vae", type=str, default=None, help="replace the model's VAE with this checkpoint file or directory")
    add("--tokenizer_cache_dir", type=str, default=None,
        help="keep a copy of the bundled tokenizers in this folder and read them from there (nothing is downloaded)")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Output, optimizer, schedule, precision, noise/loss, sampling, logging, config and metadata flags."""
    add = _adder(parser, "output and saving")
    add("--output_dir", type=str, default=None, help="directory for the trained embedding (and states, samples)")
    add("--output_name", type=str, default=None, help="file name of the trained embedding, without extension (default 'last')")
    add("--save_model_as", type=str, default="safetensors", choices=["safetensors", "pt", "ckpt"],
        help="embedding file format (default safetensors; sd-scripts' TI default is pt)")
    add("--save_precision", type=str, default=None, choices=[None, "float", "fp16", "bf16"],
        help="dtype of the saved vectors (default: float32)")
    add("--save_every_n_epochs", type=int, default=None, help="also save an embedding every N epochs")
    add("--save_every_n_steps", type=int, default=None, help="also save an embedding every N steps")
    add("--save_last_n_epochs", type=int, default=None, help="keep only the last N epoch-wise saves (older ones are deleted)")
    add("--save_last_n_steps", type=int, default=None, help="keep step-wise saves only for the last N steps (older ones are deleted)")
    add("--save_state", action="store_true", help="save the training state (optimizer, RNG, step) with every save, for --resume")
    add("--save_state_on_train_end", action="store_true", help="save the training state when training ends")
    add("--resume", type=str, default=None, help="resume from this saved state directory (its seed is used; a changed model, dataset, batch size, "
        "accumulation or token is refused)")
    add("--save_embedding_png", action="store_true",
        help="with every saved embedding also write NAME.png, a sample image carrying the embedding in AUTOMATIC1111's "
        "PNG chunk ('Save images with embedding in PNG chunks'); A1111 loads it from its embeddings folder")
    add("--training_comment", type=str, default=None, help="free text stored in the embedding's metadata")
    add("--metadata_title", type=str, default=None, help="model title in the metadata (default: output_name)")
    add("--metadata_author", type=str, default=None, help="author in the metadata")
    add("--metadata_description", type=str, default=None, help="description in the metadata")
    add("--metadata_license", type=str, default=None, help="license in the metadata")
    add("--metadata_tags", type=str, default=None, help="comma-separated tags in the metadata")

    add = _adder(parser, "steps and optimizer")
    add("--max_train_steps", type=int, default=1600, help="number of optimizer steps to train (default 1600)")
    add("--max_train_epochs", type=int, default=None, help="number of epochs to train (overrides --max_train_steps)")
    add("--learning_rate", type=parse_learning_rate, default=2.0e-6,
        help='learning rate (default 2e-6, as sd-scripts), or an A1111 schedule such as "0.005:100, 1e-3:1000, 1e-5" '
        "(0.005 for the first 100 steps, 1e-3 until step 1000, then 1e-5)")
    add("--scale_lr", action="store_true",
        help="multiply the learning rate by gradient accumulation x batch size x processes (diffusers' TI example)")
    add("--optimizer_type", type=str, default="AdamW",
        help="AdamW (default), AdamW8bit, PagedAdamW, PagedAdamW8bit, PagedAdamW32bit, Lion, Lion8bit, PagedLion8bit, "
        "SGDNesterov, SGDNesterov8bit, Adafactor, Prodigy, DAdaptAdam, DAdaptAdaGrad, DAdaptAdan, DAdaptLion, "
        "DAdaptSGD, AdamWScheduleFree, RAdamScheduleFree, SGDScheduleFree, or a class path like torch.optim.RMSprop")
    add("--optimizer_args", type=str, default=None, nargs="*",
        help='optimizer options as key=value, e.g. "weight_decay=0.01 betas=0.9,0.999"')
    add("--use_8bit_adam", action="store_true", help="old sd-scripts spelling of --optimizer_type AdamW8bit")
    add("--use_lion_optimizer", action="store_true", help="old sd-scripts spelling of --optimizer_type Lion")
    add("--max_grad_norm", type=float, default=1.0, help="clip gradients to this norm; 0 disables clipping (default 1.0)")
    add("--gradient_accumulation_steps", type=int, default=1, help="batches to accumulate per optimizer step (default 1)")
    add("--gradient_checkpointing", action="store_true", help="recompute activations in the backward pass to save memory")

    add = _adder(parser, "learning-rate schedule")
    add("--lr_scheduler", type=str, default="constant",
        help="constant (default), constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial, "
        "piecewise_constant, inverse_sqrt, cosine_with_min_lr, warmup_stable_decay, adafactor")
    add("--lr_warmup_steps", type=int_or_ratio, default=0,
        help="warmup steps (default 0), or a ratio of the training steps if below 1 (0.05) or a percentage (5%%)")
    add("--lr_decay_steps", type=int_or_ratio, default=0, help="decay steps for warmup_stable_decay (count or ratio)")
    add("--lr_scheduler_num_cycles", type=int, default=1, help="restarts for cosine_with_restarts (default 1)")
    add("--lr_scheduler_power", type=float, default=1.0, help="power of the polynomial schedule (default 1)")
    add("--lr_scheduler_timescale", type=int, default=None, help="timescale of inverse_sqrt (default: the warmup steps)")
    add("--lr_scheduler_min_lr_ratio", type=float, default=None,
        help="minimum LR as a ratio of the initial LR, for cosine_with_min_lr and warmup_stable_decay")
    add("--lr_scheduler_type", type=str, default=None, help="any scheduler class by path, e.g. torch.optim.lr_scheduler.StepLR")
    add("--lr_scheduler_args", type=str, default=None, nargs="*", help='options for that class as key=value, e.g. "step_size=100"')

    add = _adder(parser, "precision and speed")
    add("--mixed_precision", type=str, default="no", choices=["no", "fp16", "bf16"], help="autocast precision (default no)")
    add("--no_half_vae", action="store_true", help="keep the VAE in float32 under mixed precision")
    add("--full_fp16", action="store_true",
        help="no autocast: the whole forward runs in fp16 (needs --mixed_precision fp16); the trained vectors keep a float32 master copy")
    add("--full_bf16", action="store_true",
        help="no autocast: the whole forward runs in bf16 (needs --mixed_precision bf16); the trained vectors keep a float32 master copy")
    add("--seed", type=int, default=None, help="random seed for reproducible training")
    add("--sdpa", action="store_true", help="use PyTorch scaled-dot-product attention")
    add("--xformers", action="store_true", help="use xformers memory-efficient attention (needs the xformers package)")
    add("--mem_eff_attn", action="store_true", help="use memory-efficient attention")
    add("--torch_compile", action="store_true", help="compile the U-Net with torch.compile (each bucket shape compiles once)")
    add("--dynamo_backend", type=str, default="inductor", choices=DYNAMO_BACKENDS, help="torch.compile backend (default inductor)")

    add = _adder(parser, "text encoder")
    add("--clip_skip", type=int, default=None,
        help="use the output of the N-th layer from the end of the text encoder (2 for NAI-style SD1 models)")
    add("--max_token_length", type=int, default=None, choices=[None, 150, 225],
        help="caption length in tokens: 75 (default), 150 or 225")

    add = _adder(parser, "noise and timesteps")
    add("--noise_offset", type=float, default=None, help="offset noise strength (about 0.1 if used)")
    add("--noise_offset_random_strength", action="store_true", help="draw the offset strength uniformly from [0, noise_offset] each step")
    add("--adaptive_noise_scale", type=float, default=None, help="add mean |latent| x this to the noise offset (needs --noise_offset)")
    add("--multires_noise_iterations", type=int, default=None, help="multi-resolution noise levels (about 6-10 if used)")
    add("--multires_noise_discount", type=float, default=0.3, help="weight decay per multires noise level (default 0.3)")
    add("--ip_noise_gamma", type=float, default=None, help="input-perturbation noise strength (about 0.1 if used)")
    add("--ip_noise_gamma_random_strength", action="store_true", help="draw the perturbation strength uniformly from [0, ip_noise_gamma]")
    add("--min_timestep", type=int, default=None, help="lowest training timestep (default 0)")
    add("--max_timestep", type=int, default=None, help="training timesteps stay below this (default 1000)")
    add("--zero_terminal_snr", action="store_true", help="rescale the noise schedule to zero terminal SNR (meant for v-prediction)")

    add = _adder(parser, "loss")
    add("--loss_type", type=str, default="l2", choices=list(LOSS_TYPES), help="l2 (default), l1, huber or smooth_l1")
    add("--huber_schedule", type=str, default="snr", choices=list(HUBER_SCHEDULES),
        help="how the Huber parameter varies with the timestep (default snr)")
    add("--huber_c", type=float, default=0.1, help="Huber parameter (default 0.1)")
    add("--huber_scale", type=float, default=1.0, help="scale of the Huber parameter for constant/exponential schedules (default 1.0)")
    add("--min_snr_gamma", type=float, default=None, help="Min-SNR weighting gamma (5 is the paper's choice)")
    add("--scale_v_pred_loss_like_noise_pred", action="store_true", help="scale the v-prediction loss like a noise-prediction loss")
    add("--v_pred_like_loss", type=float, default=None, help="add a v-prediction-like loss times this value (epsilon models)")
    add("--debiased_estimation_loss", action="store_true", help="weight the loss by 1/sqrt(SNR) (debiased estimation)")
    add("--masked_loss", action="store_true", help="weight the loss by each image's mask (alpha channel with alpha_mask)")

    add = _adder(parser, "samples and validation")
    add("--sample_every_n_steps", type=int, default=None, help="generate sample images every N steps")
    add("--sample_every_n_epochs", type=int, default=None, help="generate sample images every N epochs (overrides steps)")
    add("--sample_at_first", action="store_true", help="generate sample images before training")
    add("--sample_prompts", type=str, default=None, help="prompt file for sample images (.txt, .toml or .json)")
    add("--sample_sampler", type=str, default="ddim", choices=list(SAMPLE_SAMPLERS), help="sampler for sample images (default ddim)")
    add("--validate_every_n_steps", type=int, default=None, help="run validation every N steps (needs a validation split)")
    add("--validate_every_n_epochs", type=int, default=None, help="run validation every N epochs (default: every epoch)")
    add("--max_validation_steps", type=int, default=None, help="validate on at most N batches (default: all)")

    add = _adder(parser, "logging")
    add("--logging_dir", type=str, default=None, help="write logs under this directory (TensorBoard by default)")
    add("--log_with", type=str, default=None, choices=["tensorboard", "wandb", "all"], help="logger to use")
    add("--log_prefix", type=str, default=None, help="prefix for the log directory name")
    add("--log_tracker_name", type=str, default=None, help="tracker (project) name (default: the script's)")
    add("--log_tracker_config", type=str, default=None, help="tracker settings file (TOML)")
    add("--wandb_run_name", type=str, default=None, help="wandb run name")
    add("--wandb_api_key", type=str, default=None, help="wandb API key to log in with (better kept in --config_file)")
    add("--log_config", action="store_true", help="log the training settings to the tracker")

    add = _adder(parser, "configuration file")
    add("--config_file", type=str, default=None,
        help="read flags from this TOML file (sections are ignored); flags given on the command line win")
    add("--output_config", action="store_true",
        help="write the command line's flags to the --config_file path as TOML, then exit")

    from library.training.sd_scripts_flags import add_sd_scripts_arguments

    add_sd_scripts_arguments(parser)  # the rest of sd-scripts' TI flags: logging, ModelSpec, DDP, refused ones


def add_textual_inversion_arguments(parser: argparse.ArgumentParser) -> None:
    """What is trained: the token, its vectors and their initialization, and the caption templates."""
    add = _adder(parser, "textual inversion")
    add("--token_string", type=str, default=None, help="the new token to train; must not be a word the tokenizer already has")
    add("--init_word", type=str, default=None, help="word(s) whose embeddings initialize the vectors")
    add("--num_vectors_per_token", type=int, default=1, help="vectors (tokens) the trained embedding has (default 1)")
    add("--weights", type=str, default=None, help="initialize the vectors from this embedding file instead")
    add("--use_object_template", action="store_true", help="ignore captions; use the built-in object templates ('a photo of a {}')")
    add("--use_style_template", action="store_true",
        help="ignore captions; use the built-in style templates ('a painting in the style of {}')")
    add("--template_file", type=str, default=None,
        help="ignore captions; use this A1111-style template file ([name] and [filewords] placeholders, one per line)")
    add("--skip_nan", action="store_true", help="skip optimizer steps whose loss is NaN/inf instead of letting them corrupt the vectors")
    add("--separate_concept_passes", action="store_true",
        help="several concepts: run each concept's batch through the model on its own (forward and backward) instead of "
             "same-resolution batches together; the same vectors, the activation memory of one batch, slower")


def add_sdxl_arguments(parser: argparse.ArgumentParser) -> None:
    """SDXL-only flags of sdxl_train_textual_inversion.py."""
    add = _adder(parser, "SDXL")
    add("--ti_text_encoders", type=str, default="l,g",
        help="which text encoders' vectors train: 'l' (CLIP-L 768), 'g' (OpenCLIP bigG 1280) or 'l,g' (both, the default)")
    add("--cache_text_encoder_outputs", action="store_true",
        help="accepted for sd-scripts compatibility and refused: TI changes the text encoders' outputs every step")
    add("--cache_text_encoder_outputs_to_disk", action="store_true", help="refused for the same reason as --cache_text_encoder_outputs")
