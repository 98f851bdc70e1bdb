"""Specification of applying embedding files to a model: tokens, frozen vectors, width checks, prompt rewriting."""

import logging

import pytest
import torch
from torch import nn

from library.embeddings import load_embeddings_into, make_prompt_rewriter, save_embedding
from library.errors import UserError
from library.models.tiny import build_tiny_components
from library.tokenizers import load_bundled_tokenizer


def _lookup(encoder, tokenizer, names):
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(names)])
    return encoder.get_input_embeddings()(ids)[0].detach()


def test_sd1_files_expand_to_all_their_vectors(tmp_path, vectors):
    parts = build_tiny_components("sd1")
    tok, te = parts["tokenizer"], parts["text_encoder"]
    save_embedding(tmp_path / "badhandv4.pt", {"emb_params": vectors}, token="badhandv3", step=1)
    single = torch.randn(1, 32)
    save_embedding(tmp_path / "learned_embeds.bin", {"emb_params": single}, token="<birb-style>", format="diffusers")

    mapping = load_embeddings_into([tok], [te], "sd1", [tmp_path / "badhandv4.pt", tmp_path / "learned_embeds.bin"])

    # the trigger word is the file name, not the name stored inside
    assert mapping == {"badhandv4": ["badhandv4", "badhandv41", "badhandv42"], "learned_embeds": ["learned_embeds"]}
    assert torch.equal(_lookup(te, tok, mapping["badhandv4"]), vectors)
    assert torch.equal(_lookup(te, tok, ["learned_embeds"]), single)
    assert not te.get_input_embeddings().vectors.requires_grad  # frozen
    rewrite = make_prompt_rewriter(mapping)
    prompt = rewrite("a photo, badhandv4, learned_embeds style")
    assert prompt == "a photo, badhandv4 badhandv41 badhandv42, learned_embeds style"
    ids = tok(prompt).input_ids
    assert tok.convert_tokens_to_ids(mapping["badhandv4"]) == ids[4:7]
    te(torch.tensor([ids]))  # the encoder runs with the new ids


def test_sdxl_file_fills_both_encoders(tmp_path):
    parts = build_tiny_components("sdxl")
    toks, tes = [parts["tokenizer"], parts["tokenizer_2"]], [parts["text_encoder"], parts["text_encoder_2"]]
    vectors = {"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 64)}
    save_embedding(tmp_path / "detailxl1.safetensors", vectors, token="detailxl1")
    mapping = load_embeddings_into(toks, tes, "sdxl", [tmp_path / "detailxl1.safetensors"])
    assert torch.equal(_lookup(tes[0], toks[0], mapping["detailxl1"]), vectors["clip_l"])
    assert torch.equal(_lookup(tes[1], toks[1], mapping["detailxl1"]), vectors["clip_g"])


def test_sd1_file_on_sdxl_applies_to_clip_l_only_with_a_warning(tmp_path, vectors, caplog):
    parts = build_tiny_components("sdxl")
    toks, tes = [parts["tokenizer"], parts["tokenizer_2"]], [parts["text_encoder"], parts["text_encoder_2"]]
    save_embedding(tmp_path / "easyneg.safetensors", {"emb_params": vectors}, token="easyneg")
    with caplog.at_level(logging.WARNING):
        mapping = load_embeddings_into(toks, tes, "sdxl", [tmp_path / "easyneg.safetensors"])
    assert "CLIP-L only" in caplog.text
    assert torch.equal(_lookup(tes[0], toks[0], mapping["easyneg"]), vectors)
    assert torch.equal(_lookup(tes[1], toks[1], mapping["easyneg"]), torch.zeros(3, 64))


def test_width_mismatch_names_the_file_and_both_widths(tmp_path, vectors):
    parts = build_tiny_components("sd2")  # text encoder 48 wide
    save_embedding(tmp_path / "sd1thing.pt", {"emb_params": vectors}, token="x")
    with pytest.raises(UserError, match=r"sd1thing\.pt: the embedding's vectors are 32 wide but the model's text encoder is 48"):
        load_embeddings_into([parts["tokenizer"]], [parts["text_encoder"]], "sd2", [tmp_path / "sd1thing.pt"])


def test_clashing_trigger_words_are_refused(tmp_path, vectors):
    parts = build_tiny_components("sd1")
    (tmp_path / "a").mkdir()
    save_embedding(tmp_path / "MyStyle.pt", {"emb_params": vectors}, token="x")
    save_embedding(tmp_path / "a" / "mystyle.pt", {"emb_params": vectors}, token="x")
    save_embedding(tmp_path / "cat.pt", {"emb_params": vectors}, token="x")
    tok, te = parts["tokenizer"], parts["text_encoder"]
    with pytest.raises(UserError, match="also the trigger word of .*MyStyle.pt; rename"):
        load_embeddings_into([tok], [te], "sd1", [tmp_path / "MyStyle.pt", tmp_path / "a" / "mystyle.pt"])
    with pytest.raises(UserError, match=r"cat\.pt \(its file name is its trigger word; rename the file.*already exist"):
        load_embeddings_into([tok], [te], "sd1", [tmp_path / "cat.pt"])


def test_prompt_rewriter_is_one_pass_longest_first_and_exact_case():
    rewrite = make_prompt_rewriter({"bad": ["bad"], "bad-hands-5": ["bad-hands-5", "bad-hands-51"], "EasyNegative": ["EasyNegative", "EasyNegative1"]})
    assert rewrite("bad-hands-5, EasyNegative, bad, badly") == "bad-hands-5 bad-hands-51, EasyNegative EasyNegative1, bad, badly"
    # the trigger word is case-sensitive, as sd-scripts' gen_img matches it (and as training captions are)
    assert rewrite("easynegative") == "easynegative"
    # spelled out, as sd-scripts' docs allow: each vector once
    assert rewrite("bad-hands-5 bad-hands-51, EasyNegative EasyNegative1") == "bad-hands-5 bad-hands-51, EasyNegative EasyNegative1"
    assert make_prompt_rewriter({})("unchanged") == "unchanged"


class _TableOnly(nn.Module):
    """A text encoder reduced to its token table, at a real model's width (cheap: zeros, no transformer)."""

    def __init__(self, dim: int):
        super().__init__()
        self.table = nn.Embedding(49408, dim, _weight=torch.zeros(49408, dim))

    def get_input_embeddings(self):
        return self.table

    def set_input_embeddings(self, module):
        self.table = module


def test_real_files_apply_at_real_widths(realworld_dir, caplog):
    folder = realworld_dir / "embeddings"
    sd1 = ["a1111_mayaru_bad-hands-5.pt", "diffusers_waymonx_petit-prince-moon_learned_embeds.bin", "ldm-rinongal_eastonhill_embeddings-parameterdict-cuda.pt"]
    mapping = load_embeddings_into([load_bundled_tokenizer("sd1")], [_TableOnly(768)], "sd1", [folder / name for name in sd1])
    assert len(mapping["a1111_mayaru_bad-hands-5"]) == 2

    encoders = [_TableOnly(768), _TableOnly(1280)]
    with caplog.at_level(logging.WARNING):
        mapping = load_embeddings_into(
            [load_bundled_tokenizer("sd1"), load_bundled_tokenizer("sd2")],
            encoders,
            "sdxl",
            [folder / "sdxl_kaleidia_SDXL-HairDetail-8vec.safetensors", folder / "emb_params-pickle_fgjd_EasyNegative.pt"],
        )
    assert len(mapping["sdxl_kaleidia_SDXL-HairDetail-8vec"]) == 8 and "CLIP-L only" in caplog.text
    assert encoders[1].get_input_embeddings().vectors.shape == (16, 1280)
    with pytest.raises(UserError, match="768 wide but the model's text encoder is 1024"):
        load_embeddings_into([load_bundled_tokenizer("sd2")], [_TableOnly(1024)], "sd2", [folder / "a1111_mayaru_bad-hands-5.pt"])
