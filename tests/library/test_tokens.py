"""Specification of new-token naming, registration and the whole-word caption rewrite."""

import pytest
import torch

from library.errors import UserError
from library.models.tiny import build_tiny_components
from library.token_embedding import install_vectors, init_vectors_from_word
from library.tokens import add_new_tokens, contains_token, make_caption_rewriter, new_token_names
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
