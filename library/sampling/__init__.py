"""Image generation shared by gen_img.py and the trainer's sample images.

prompt_options: prompt lines/files with sd-scripts' `--n --w --h --s --d --l` options -> PromptSpec
samplers: sampler names -> diffusers schedulers; prompt_weighting: long prompts, (word:1.2) weights -> embeddings
generate: plan images and render them with diffusers pipelines; saving: file names, PNG metadata, sample_images
png_info: AUTOMATIC1111's `parameters` text, written and read back
gen_img.py's run: inputs (prompts, img2img images, stdin) -> gen_img_run (flags, model, generate) -> writer
"""

from library.sampling.generate import (
    GenerationDefaults,
    ImageJob,
    ImageRenderer,
    SamplingModel,
    SeedSource,
    generate_images,
    plan_images,
    sampling_model_from_components,
)
from library.sampling.prompt_options import PromptSpec, parse_prompt_file, parse_prompt_line, parse_prompt_lines
from library.sampling.prompt_weighting import PromptEmbeds, PromptEncoder, parse_prompt_attention
from library.sampling.samplers import SAMPLER_NAMES, check_sampler, make_sample_scheduler
from library.sampling.saving import sample_images

__all__ = [
    "GenerationDefaults",
    "ImageJob",
    "ImageRenderer",
    "PromptEmbeds",
    "PromptEncoder",
    "PromptSpec",
    "SAMPLER_NAMES",
    "SamplingModel",
    "SeedSource",
    "check_sampler",
    "generate_images",
    "make_sample_scheduler",
    "parse_prompt_attention",
    "parse_prompt_file",
    "parse_prompt_line",
    "parse_prompt_lines",
    "plan_images",
    "sample_images",
    "sampling_model_from_components",
]
