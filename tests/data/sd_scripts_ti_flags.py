"""Every flag of kohya-ss/sd-scripts' Textual Inversion parsers, written down as data, with a valid sample value each.

Source: github.com/kohya-ss/sd-scripts, main branch (the versions with the ModelSpec 1.0.1 metadata flags),
read 2026-12-03 from stored copies of the files:
- sdxl_train_textual_inversion.py::setup_parser at commit 04ed9ed15877bfe5944d9da049405ee928f4b00d: the TI parser
  plus sdxl_train_util.add_sdxl_training_arguments(parser, support_text_encoder_caching=False);
- train_textual_inversion.py::setup_parser of the same generation (it calls add_logging_arguments,
  add_sd_models_arguments, sai_model_spec.add_model_spec_arguments, add_dataset_arguments(parser, True, True, False),
  add_training_arguments(parser, True), add_masked_loss_arguments, deepspeed_utils.add_deepspeed_arguments,
  add_optimizer_arguments, config_util.add_config_arguments, add_custom_train_arguments(parser, False), then its own
  eight flags). The index's kohya-ss copy of this file is older (f687af524cf6, before the ModelSpec, masked-loss and
  DeepSpeed groups); the newer text was read from a stored copy whose repository the index did not name;
- library/train_util.py at commit 6edbe00547bac6c2efb2d6952eb910851662cdf2 (the argument groups above);
- library/sai_model_spec.py at commit 10bfcb9ac5b3467abde3a0aa5972478d1a0a6595 (add_model_spec_arguments);
- library/deepspeed_utils.py at 2374f400707f, library/sdxl_train_util.py at 005182c1c5ab,
  library/custom_train_functions.py at 0329bea5848f, library/utils.py::add_logging_arguments.
Cross-check: before this suite took them over, 37 of these flags (38 for SDXL) were refused with "unrecognized
arguments", the numbers issue 15 reported.

Each entry maps a flag to the argv words after it: [] for a store_true flag, otherwise one valid sample value
(nargs="*" flags get one item). The values are ones sd-scripts itself accepts.
"""

from __future__ import annotations

SD_SCRIPTS_SOURCE = "kohya-ss/sd-scripts main (train_util.py @6edbe005, sai_model_spec.py @10bfcb9a, sdxl TI @04ed9ed1)"

# library/utils.py::add_logging_arguments
LOGGING = {
    "--console_log_level": ["WARNING"],
    "--console_log_file": ["run.log"],
    "--console_log_simple": [],
}

# train_util.add_sd_models_arguments
SD_MODELS = {
    "--v2": [],
    "--v_parameterization": [],
    "--pretrained_model_name_or_path": ["model.safetensors"],
    "--tokenizer_cache_dir": ["tokenizers"],
}

# sai_model_spec.add_model_spec_arguments
MODEL_SPEC = {
    "--metadata_title": ["My concept"],
    "--metadata_author": ["me"],
    "--metadata_description": ["a test concept"],
    "--metadata_license": ["CreativeML Open RAIL-M"],
    "--metadata_tags": ["character,test"],
    "--metadata_usage_hint": ["use mychar4 at the start"],
    "--metadata_thumbnail": ["data:image/png;base64,AAAA"],
    "--metadata_merged_from": ["a, b"],
    "--metadata_trigger_phrase": ["mychar4"],
    "--metadata_preprocessor": ["none"],
    "--metadata_is_negative_embedding": ["false"],
}

# train_util.add_dataset_arguments(parser, support_dreambooth=True, support_caption=True, support_caption_dropout=False)
DATASET = {
    "--train_data_dir": ["train"],
    "--cache_info": [],
    "--shuffle_caption": [],
    "--caption_separator": [","],
    "--caption_extension": [".txt"],
    "--caption_extention": [".txt"],
    "--keep_tokens": ["1"],
    "--keep_tokens_separator": ["|||"],
    "--secondary_separator": [";;;"],
    "--enable_wildcard": [],
    "--caption_prefix": ["photo of"],
    "--caption_suffix": ["best quality"],
    "--color_aug": [],
    "--flip_aug": [],
    "--face_crop_aug_range": ["2.0,4.0"],
    "--random_crop": [],
    "--debug_dataset": [],
    "--resolution": ["512,512"],
    "--cache_latents": [],
    "--vae_batch_size": ["2"],
    "--cache_latents_to_disk": [],
    "--skip_cache_check": [],
    "--enable_bucket": [],
    "--min_bucket_reso": ["256"],
    "--max_bucket_reso": ["1024"],
    "--bucket_reso_steps": ["64"],
    "--bucket_no_upscale": [],
    "--resize_interpolation": ["lanczos"],
    "--token_warmup_min": ["1"],
    "--token_warmup_step": ["0"],
    "--alpha_mask": [],
    "--dataset_class": ["mypackage.MyDataset"],
    "--reg_data_dir": ["reg"],
    "--in_json": ["meta.json"],
    "--dataset_repeats": ["1"],
}

# train_util.add_training_arguments(parser, support_dreambooth=True)
TRAINING = {
    "--output_dir": ["out"],
    "--output_name": ["mychar"],
    "--huggingface_repo_id": ["me/mychar"],
    "--huggingface_repo_type": ["model"],
    "--huggingface_path_in_repo": ["embeddings"],
    "--huggingface_token": ["hf_secret_token_value"],
    "--huggingface_repo_visibility": ["private"],
    "--save_state_to_huggingface": [],
    "--resume_from_huggingface": [],
    "--async_upload": [],
    "--save_precision": ["fp16"],
    "--save_every_n_epochs": ["1"],
    "--save_every_n_steps": ["100"],
    "--save_n_epoch_ratio": ["5"],
    "--save_last_n_epochs": ["2"],
    "--save_last_n_epochs_state": ["1"],
    "--save_last_n_steps": ["200"],
    "--save_last_n_steps_state": ["100"],
    "--save_state": [],
    "--save_state_on_train_end": [],
    "--resume": ["out/mychar-state"],
    "--train_batch_size": ["1"],
    "--max_token_length": ["225"],
    "--mem_eff_attn": [],
    "--torch_compile": [],
    "--dynamo_backend": ["inductor"],
    "--xformers": [],
    "--sdpa": [],
    "--vae": ["vae.safetensors"],
    "--max_train_steps": ["1600"],
    "--max_train_epochs": ["10"],
    "--max_data_loader_n_workers": ["2"],
    "--persistent_data_loader_workers": [],
    "--seed": ["42"],
    "--gradient_checkpointing": [],
    "--gradient_accumulation_steps": ["1"],
    "--mixed_precision": ["bf16"],
    "--full_fp16": [],
    "--full_bf16": [],
    "--fp8_base": [],
    "--ddp_timeout": ["30"],
    "--ddp_gradient_as_bucket_view": [],
    "--ddp_static_graph": [],
    "--clip_skip": ["2"],
    "--logging_dir": ["logs"],
    "--log_with": ["tensorboard"],
    "--log_prefix": ["ti-"],
    "--log_tracker_name": ["ti"],
    "--wandb_run_name": ["run1"],
    "--log_tracker_config": ["tracker.toml"],
    "--wandb_api_key": ["wandb_secret"],
    "--log_config": [],
    "--noise_offset": ["0.05"],
    "--noise_offset_random_strength": [],
    "--multires_noise_iterations": ["6"],
    "--ip_noise_gamma": ["0.1"],
    "--ip_noise_gamma_random_strength": [],
    "--multires_noise_discount": ["0.3"],
    "--adaptive_noise_scale": ["0.01"],
    "--zero_terminal_snr": [],
    "--min_timestep": ["0"],
    "--max_timestep": ["1000"],
    "--loss_type": ["l2"],
    "--huber_schedule": ["snr"],
    "--huber_c": ["0.1"],
    "--huber_scale": ["1.0"],
    "--lowram": [],
    "--highvram": [],
    "--sample_every_n_steps": ["100"],
    "--sample_at_first": [],
    "--sample_every_n_epochs": ["1"],
    "--sample_prompts": ["prompts.txt"],
    "--sample_sampler": ["euler_a"],
    "--config_file": ["config.toml"],
    "--output_config": [],
    "--prior_loss_weight": ["1.0"],
}

# train_util.add_masked_loss_arguments
MASKED_LOSS = {
    "--conditioning_data_dir": ["masks"],
    "--masked_loss": [],
}

# deepspeed_utils.add_deepspeed_arguments
DEEPSPEED = {
    "--deepspeed": [],
    "--zero_stage": ["2"],
    "--offload_optimizer_device": ["cpu"],
    "--offload_optimizer_nvme_path": ["/nvme"],
    "--offload_param_device": ["cpu"],
    "--offload_param_nvme_path": ["/nvme"],
    "--zero3_init_flag": [],
    "--zero3_save_16bit_model": [],
    "--fp16_master_weights_and_gradients": [],
}

# train_util.add_optimizer_arguments
OPTIMIZER = {
    "--optimizer_type": ["AdamW"],
    "--use_8bit_adam": [],
    "--use_lion_optimizer": [],
    "--learning_rate": ["5e-3"],
    "--max_grad_norm": ["1.0"],
    "--optimizer_args": ["weight_decay=0.01"],
    "--lr_scheduler_type": ["torch.optim.lr_scheduler.StepLR"],
    "--lr_scheduler_args": ["step_size=100"],
    "--lr_scheduler": ["cosine"],
    "--lr_warmup_steps": ["10"],
    "--lr_decay_steps": ["0"],
    "--lr_scheduler_num_cycles": ["1"],
    "--lr_scheduler_power": ["1.0"],
    "--fused_backward_pass": [],
    "--lr_scheduler_timescale": ["100"],
    "--lr_scheduler_min_lr_ratio": ["0.1"],
}

# config_util.add_config_arguments
CONFIG = {
    "--dataset_config": ["dataset.toml"],
}

# custom_train_functions.add_custom_train_arguments(parser, support_weighted_captions=False)
CUSTOM_TRAIN = {
    "--min_snr_gamma": ["5"],
    "--scale_v_pred_loss_like_noise_pred": [],
    "--v_pred_like_loss": ["0.1"],
    "--debiased_estimation_loss": [],
}

# the flags train_textual_inversion.py::setup_parser adds itself
TEXTUAL_INVERSION = {
    "--save_model_as": ["pt"],
    "--weights": ["init.safetensors"],
    "--num_vectors_per_token": ["4"],
    "--token_string": ["mychar4"],
    "--init_word": ["girl"],
    "--use_object_template": [],
    "--use_style_template": [],
    "--no_half_vae": [],
}

# sdxl_train_util.add_sdxl_training_arguments(parser, support_text_encoder_caching=False), SDXL script only
SDXL_ONLY = {
    "--disable_mmap_load_safetensors": [],
}

TI_FLAGS: dict[str, list[str]] = {
    **LOGGING, **SD_MODELS, **MODEL_SPEC, **DATASET, **TRAINING, **MASKED_LOSS, **DEEPSPEED, **OPTIMIZER, **CONFIG,
    **CUSTOM_TRAIN, **TEXTUAL_INVERSION,
}  # fmt: skip
SDXL_TI_FLAGS: dict[str, list[str]] = {**TI_FLAGS, **SDXL_ONLY}

# every value sd-scripts' parsers accept for the flags that take a fixed set of choices (same source)
CHOICES: dict[str, list[str]] = {
    "--console_log_level": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    "--save_precision": ["float", "fp16", "bf16"],
    "--save_model_as": ["ckpt", "pt", "safetensors"],
    "--max_token_length": ["150", "225"],
    "--dynamo_backend": [
        "eager", "aot_eager", "inductor", "aot_ts_nvfuser", "nvprims_nvfuser", "cudagraphs", "ofi", "fx2trt", "onnxrt",
        "tensort", "ipex", "tvm",
    ],
    "--mixed_precision": ["no", "fp16", "bf16"],
    "--log_with": ["tensorboard", "wandb", "all"],
    "--loss_type": ["l1", "l2", "huber", "smooth_l1"],
    "--huber_schedule": ["constant", "exponential", "snr"],
    "--sample_sampler": [
        "ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver", "dpmsolver++", "dpmsingle",
        "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a",
    ],
    "--resize_interpolation": ["lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area"],
    "--zero_stage": ["0", "1", "2", "3"],
    "--offload_optimizer_device": ["cpu", "nvme"],
    "--offload_param_device": ["cpu", "nvme"],
}
