"""Specification of caption -> conditioning: 75-token chunks, clip skip, SDXL pooled output at end-of-text."""

import torch

from library.models.tiny import build_tiny_components
from library.text_conditioning import encode_sd, encode_sdxl, first_eos_positions, join_chunks, tokenize_chunks
from library.token_embedding import install_vectors
from library.tokens import add_new_tokens


def test_default_length_is_one_window_of_77():
    tok = build_tiny_components("sd1")["tokenizer"]
    ids = tokenize_chunks(tok, ["a photo of a cat"])
    assert ids.shape == (1, 1, 77)
    assert ids[0, 0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_long_captions_split_into_windows_with_bos_and_eos():
    for style in ("sd1", "sd2"):
        tok = build_tiny_components("sd1" if style == "sd1" else "sd2")["tokenizer"]
        ids = tokenize_chunks(tok, ["a cat " * 100, "a dog"], max_token_length=225)
        assert ids.shape == (2, 3, 77)
        assert (ids[:, :, 0] == 49406).all()
        # a window cut in the middle of the text still ends in end-of-text
        assert ids[0, 0, -1] == 49407 and ids[0, 1, -1] == 49407
        # a window past the end of a short caption starts with end-of-text
        assert ids[1, 1, 1] == 49407


def test_join_chunks_keeps_one_bos_and_all_content():
    hidden = torch.arange(2 * 3 * 77).float().reshape(6, 77, 1)
    joined = join_chunks(hidden, batch=2)
    assert joined.shape == (2, 3 * 75 + 2, 1)
    assert joined[0, 0, 0] == 0 and joined[0, 1, 0] == 1 and joined[0, 76, 0] == 77 + 1


def test_clip_skip_changes_sd_conditioning():
    parts = build_tiny_components("sd1")
    ids = tokenize_chunks(parts["tokenizer"], ["a photo of a cat"])
    with torch.no_grad():
        last = encode_sd(parts["text_encoder"], ids)
        skip2 = encode_sd(parts["text_encoder"], ids, clip_skip=2)
    assert last.shape == skip2.shape == (1, 77, 32)
    assert not torch.allclose(last, skip2)


def test_sdxl_pooled_output_is_taken_at_end_of_text_even_with_new_tokens():
    parts = build_tiny_components("sdxl")
    encoders = [parts["text_encoder"], parts["text_encoder_2"]]
    toks = [parts["tokenizer"], parts["tokenizer_2"]]
    for tok, enc in zip(toks, encoders):
        add_new_tokens(tok, ["mychar4"])
        install_vectors(enc, torch.randn(1, enc.get_input_embeddings().embedding_dim), trainable=False)
    captions = ["a mychar4 cat"]
    ids = [tokenize_chunks(t, captions) for t in toks]
    assert ids[1].max() == 49408  # the new token has the highest id, above end-of-text
    with torch.no_grad():
        hidden, pooled = encode_sdxl(encoders, ids)
        eos = first_eos_positions(ids[1][:, 0], 49407)
        out = encoders[1](ids[1][:, 0], output_hidden_states=True)
        final = encoders[1].text_model.final_layer_norm(out.hidden_states[-1])
        expected = encoders[1].text_projection(final[torch.arange(1), eos])
    assert eos.item() == 4  # BOS a mychar4 cat EOS
    assert hidden.shape == (1, 77, 32 + 64)
    torch.testing.assert_close(pooled, expected)
