"""set_attention: the one switch of attention kernels, shared by the trainer and gen_img.py."""

import argparse
import logging

from library.models.attention import set_attention
from library.models.tiny import build_tiny_components
from library.training import model_setup


def processors(unet) -> set[str]:
    return {type(p).__name__ for p in unet.attn_processors.values()}


def test_sdpa_sliced_and_default():
    unet = build_tiny_components("sd1")["unet"]
    assert set_attention(unet, mem_eff_attn=True) == "sliced" and processors(unet) == {"SlicedAttnProcessor"}
    assert set_attention(unet, sdpa=True) == "sdpa" and processors(unet) == {"AttnProcessor2_0"}
    assert set_attention(unet) == "sdpa"


def test_two_kernels_warn_and_name_both(caplog):
    unet = build_tiny_components("sd1")["unet"]
    caplog.set_level(logging.WARNING)
    assert set_attention(unet, sdpa=True, mem_eff_attn=True) == "sliced"
    assert "--mem_eff_attn and --sdpa: only --mem_eff_attn takes effect" in caplog.text


def test_the_trainer_uses_the_shared_setter():
    unet = build_tiny_components("sd1")["unet"]
    model_setup.set_attention(argparse.Namespace(xformers=False, mem_eff_attn=True, sdpa=False), unet)
    assert processors(unet) == {"SlicedAttnProcessor"}
