"""Specification of new-token naming, registration and the whole-word caption rewrite."""

import logging

import pytest
import torch

from library.errors import UserError
from library.models.tiny import build_tiny_components
from library.token_embedding import install_vectors, init_vectors_from_word
from library.embeddings import make_prompt_rewriter
from library.tokens import add_new_tokens, contains_token, make_caption_rewriter, near_misses, new_token_names
from library.tokenizers import load_bundled_tokenizer


def test_bundled_tokenizers_encode_the_reference_sentence():
    for style in ("sd1", "sd2"):
        assert load_bundled_tokenizer(style)("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert load_bundled_tokenizer("sd1").pad_token == "<|endoftext|>"
    assert load_bundled_tokenizer("sd2").pad_token == "!"


def test_token_names_follow_sd_scripts():
    assert new_token_names("mychar4", 4) == ["mychar4", "mychar41", "mychar42", "mychar43"]
    assert new_token_names("x", 1) == ["x"]


def test_new_tokens_get_ids_after_the_vocabulary():
    tok = load_bundled_tokenizer("sd1")
    assert add_new_tokens(tok, new_token_names("mychar4", 3)) == [49408, 49409, 49410]


@pytest.mark.parametrize("word", ["cat", "girl", "Photo"])
def test_existing_word_is_refused(word):
    with pytest.raises(UserError, match="already exist"):
        add_new_tokens(load_bundled_tokenizer("sd1"), [word])


def test_rewrite_replaces_whole_words_only():
    rewrite = make_caption_rewriter("cat", ["cat", "cat1"])
    assert rewrite("a cat, in a catalog; cat") == "a cat cat1, in a catalog; cat cat1"
    assert contains_token("<lesion> on skin", "<lesion>")
    assert not contains_token("catalog", "cat")


NAMES = new_token_names("mychar4", 4)
SPELLED_OUT = {  # prompt -> what the rewrite gives: each vector once, however much of the name list is written
    "a mychar4 photo": "a mychar4 mychar41 mychar42 mychar43 photo",
    "a mychar4 mychar41 mychar42 mychar43 photo": "a mychar4 mychar41 mychar42 mychar43 photo",  # sd-scripts' docs
    "(mychar4 mychar41 mychar42 mychar43:1.2)": "(mychar4 mychar41 mychar42 mychar43:1.2)",
    "mychar4 mychar41, smiling": "mychar4 mychar41 mychar42 mychar43, smiling",
    "mychar4, mychar4": "mychar4 mychar41 mychar42 mychar43, mychar4 mychar41 mychar42 mychar43",
}


@pytest.mark.parametrize("prompt, expected", SPELLED_OUT.items())
def test_spelled_out_names_give_each_vector_once_in_captions_sample_and_gen_img_prompts(prompt, expected):
    caption_rewrite = make_caption_rewriter("mychar4", NAMES)  # training captions and sample prompts
    gen_img_rewrite = make_prompt_rewriter({"mychar4": NAMES})  # gen_img prompts
    assert caption_rewrite(prompt) == gen_img_rewrite(prompt) == expected
    assert caption_rewrite(expected) == expected  # rewriting is idempotent


def test_all_four_names_reach_the_real_clip_tokenizer_once():
    tok = load_bundled_tokenizer("sd1")
    ids = add_new_tokens(tok, NAMES)
    prompt = make_caption_rewriter("mychar4", NAMES)("a mychar4 mychar41 mychar42 mychar43 photo")
    encoded = tok(prompt, add_special_tokens=False).input_ids
    assert [i for i in encoded if i >= 49408] == ids  # 4 vectors, once each (was 7: the base name expanded, then 1-3 again)


# transformers 5 matched added tokens inside words and after lowercasing: these words fed the first vector
CASE_AND_SUFFIX_VARIANTS = ["MYCHAR4 photo", "Mychar4 photo", "mychar4s photo", "xmychar4 photo", "mychar4_b photo"]


@pytest.mark.parametrize("style", ["sd1", "sd2"])
@pytest.mark.parametrize("caption", CASE_AND_SUFFIX_VARIANTS)
def test_case_and_suffix_variants_are_plain_text_to_the_rewrite_and_the_real_tokenizer(style, caption):
    tok = load_bundled_tokenizer(style)
    add_new_tokens(tok, NAMES)
    rewritten = make_caption_rewriter("mychar4", NAMES)(caption)
    assert rewritten == caption and not contains_token(caption, "mychar4")
    assert all(i < 49408 for i in tok(rewritten).input_ids)


@pytest.mark.parametrize("caption", ["mychar4, photo", "(mychar4:1.2)", "a  mychar4\tphoto", "photo of mychar4."])
def test_the_exact_whole_word_reaches_the_real_tokenizer(caption):
    tok = load_bundled_tokenizer("sd1")
    ids = add_new_tokens(tok, NAMES)
    encoded = tok(make_caption_rewriter("mychar4", NAMES)(caption)).input_ids
    assert [i for i in encoded if i >= 49408] == ids


def test_a_token_string_with_capitals_matches_with_its_own_case_only():
    tok = load_bundled_tokenizer("sd1")
    names = new_token_names("MyChar4", 2)
    ids = add_new_tokens(tok, names)
    rewrite = make_caption_rewriter("MyChar4", names)
    assert [i for i in tok(rewrite("a MyChar4 photo")).input_ids if i >= 49408] == ids
    assert [i for i in tok(rewrite("a mychar4 photo")).input_ids if i >= 49408] == []


def test_near_misses_count_case_and_suffix_variants_but_not_the_names():
    captions = ["MYCHAR4 smiling", "mychar4s at the beach, Mychar4", "mychar4 mychar41 mychar43", "MYCHAR4, again"]
    assert near_misses(captions, "mychar4") == {"MYCHAR4": 2, "mychar4s": 1, "Mychar4": 1}
    assert near_misses(["a mychar4 photo"], "mychar4") == {}


def test_only_new_vectors_receive_gradients():
    parts = build_tiny_components("sd1")
    tok, te = parts["tokenizer"], parts["text_encoder"]
    te.requires_grad_(False)
    ids = add_new_tokens(tok, new_token_names("mychar4", 2))
    vectors, note = init_vectors_from_word(tok, te, "girl", 2)
    assert note is not None  # one init token for two vectors
    emb = install_vectors(te, vectors)
    batch = tok(["a mychar4 mychar41 photo"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0] in batch[0].tolist()
    te(batch).last_hidden_state.square().mean().backward()
    assert emb.vectors.grad is not None and emb.vectors.grad.abs().sum() > 0
    trainable = [n for n, p in te.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0].endswith("embeddings.token_embedding.vectors")


def test_extended_embedding_matches_base_rows_for_old_ids():
    parts = build_tiny_components("sd1")
    te = parts["text_encoder"]
    base = te.get_input_embeddings()
    ids = torch.tensor([[49406, 320, 49407]])
    before = base(ids)
    install_vectors(te, torch.randn(2, base.embedding_dim))
    assert torch.equal(te.get_input_embeddings()(ids), before)


def test_training_start_warns_with_the_near_miss_count(caplog):
    from library.training.data_setup import warn_near_misses

    with caplog.at_level(logging.WARNING):
        warn_near_misses(["MYCHAR4 smiling", "mychar4s", "mychar4 at home"], "mychar4")
    assert "2 word(s) in the captions resemble the token string 'mychar4'" in caplog.text and "'MYCHAR4' x1" in caplog.text
