"""Every real embedding file in ../shared/realworld/embeddings loads with the shapes INDEX.json lists, or is refused
with the right reason. A file added there without an entry here fails the completeness test."""

import json

import pytest
import torch

from library.embeddings import read_embedding
from library.errors import UserError

# file -> (layout, {slot: INDEX.json entry key holding its shape}, the file's own name)
LOADS = {
    "a1111-st_fgjd_EasyNegativeV2-emb_params.safetensors": ("emb_params", {"emb_params": "emb_params"}, None),
    "a1111_fgjd_badhandv4-name-mismatch.pt": ("a1111", {"emb_params": "'string_to_param'['*']"}, "badhandv3"),
    "a1111_kaleidia_SD15-HairDetail-embeddingmerge.pt": ("a1111", {"emb_params": "'string_to_param'['*']"}, "_EmbeddingMerge_temp"),
    "a1111_lugia19_promare-style-24vec.pt": ("a1111", {"emb_params": "'string_to_param'['*']"}, "promare-style"),
    "a1111_mayaru_bad-hands-5.pt": ("a1111", {"emb_params": "'string_to_param'['*']"}, "bad-hands-5"),
    "diffusers-st_ttekcor_detail-schemas_learned_embeds.safetensors": ("diffusers", {"emb_params": "<detail-schemas>"}, "<detail-schemas>"),
    "diffusers_fastai_birb-style_learned_embeds.bin": ("diffusers", {"emb_params": "'<birb-style>'"}, "<birb-style>"),
    "diffusers_waymonx_petit-prince-moon_learned_embeds.bin": ("diffusers", {"emb_params": "'<Le Petit Prince-moon >'"}, "<Le Petit Prince-moon >"),
    "emb_params-pickle_fgjd_EasyNegative.pt": ("emb_params", {"emb_params": "'emb_params'"}, None),
    "ldm-rinongal_eastonhill_embeddings-parameterdict-cuda.pt": ("ldm", {"emb_params": "'string_to_param'['*'] (nn.ParameterDict)"}, None),
    "sdxl_kaleidia_SDXL-Detail-2vec.safetensors": ("sdxl", {"clip_l": "clip_l", "clip_g": "clip_g"}, None),
    "sdxl_kaleidia_SDXL-HairDetail-8vec.safetensors": ("sdxl", {"clip_l": "clip_l", "clip_g": "clip_g"}, None),
    # the XL-Textual-Inversion notebook's {'emb', 'emb2'}: recognisable, so read as SDXL (with a note)
    "unsupported-sdxl-custom_roettger_myPuppet768.pt": ("xl-inversion", {"clip_l": "'emb'", "clip_g": "'emb2'"}, None),
}
REFUSED = {
    "unsupported-t5_kaleidia_T5-CharDetail.safetensors": r"another model family.*'t5xxl' float32\[88, 4096\].*only CLIP embeddings",
}
DTYPES = {"F32": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}


@pytest.fixture(scope="module")
def index(realworld_dir):
    return json.loads((realworld_dir / "embeddings" / "INDEX.json").read_text())


def test_every_file_is_classified(index):
    assert set(index) == set(LOADS) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(LOADS))
def test_real_file_loads_with_indexed_shapes(realworld_dir, index, name):
    layout, slot_keys, own_name = LOADS[name]
    emb = read_embedding(realworld_dir / "embeddings" / name)
    entries = {e["key"]: e for e in index[name]["entries"]}
    assert emb.layout == layout and emb.token == own_name
    assert emb.trigger == name.rsplit(".", 1)[0]  # the file name, whatever the file calls itself
    assert set(emb.vectors) == set(slot_keys)
    for slot, key in slot_keys.items():
        shape = entries[key]["shape"]
        assert tuple(emb.vectors[slot].shape) == (tuple(shape) if len(shape) == 2 else (1, shape[0]))
        assert emb.vectors[slot].dtype == DTYPES[entries[key]["dtype"]]
        assert torch.isfinite(emb.vectors[slot].float()).all()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_real_file_is_refused_with_the_reason(realworld_dir, name):
    with pytest.raises(UserError, match=REFUSED[name]):
        read_embedding(realworld_dir / "embeddings" / name)


def test_a1111_metadata_and_step_are_kept(realworld_dir):
    emb = read_embedding(realworld_dir / "embeddings" / "a1111_mayaru_bad-hands-5.pt")
    assert emb.step == 1419 and emb.metadata == {"sd_checkpoint": "5d2f8777af", "sd_checkpoint_name": "7th7-any3"}


def test_ldm_file_needs_more_than_plain_weights_only_loading(realworld_dir):
    # the reason safe_pickle allow-lists ParameterDict: plain weights_only loading refuses this real file
    with pytest.raises(Exception, match="ParameterDict"):
        torch.load(realworld_dir / "embeddings" / "ldm-rinongal_eastonhill_embeddings-parameterdict-cuda.pt", weights_only=True, map_location="cpu")
