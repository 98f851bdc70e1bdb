"""Specification of A1111 weighting, long-prompt chunking and the prompt -> embeddings encoder."""

import pytest
import torch

from library.models.tiny import build_tiny_pipeline
from library.sampling.prompt_weighting import (
    PromptEncoder,
    apply_weights,
    build_windows,
    parse_prompt_attention,
    tokenize_weighted,
)
from library.token_embedding import install_vectors
from library.tokenizers import load_bundled_tokenizer
from library.tokens import add_new_tokens


@pytest.fixture(scope="module")
def pipes():
    return {family: build_tiny_pipeline(family) for family in ("sd1", "sd2", "sdxl")}


def encoder_for(pipe, family, **kwargs):
    if family == "sdxl":
        return PromptEncoder(family, [pipe.tokenizer, pipe.tokenizer_2], [pipe.text_encoder, pipe.text_encoder_2], **kwargs)
    return PromptEncoder(family, [pipe.tokenizer], [pipe.text_encoder], **kwargs)


# ---- the weighting syntax -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(word:1.5) and [less]", [("word", 1.5), (" and ", 1.0), ("less", 1 / 1.1)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        (r"\(literal\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        ("time: 10:30", [("time: 10:30", 1.0)]),
        ("((nested))", [("nested", pytest.approx(1.21))]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_prompt_attention(text, expected):
    assert parse_prompt_attention(text) == expected


def test_parse_prompt_attention_a1111_example():
    got = parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
    assert [t for t, _ in got] == ["a ", "house", " ", "on", " a ", "hill", ", sun, ", "sky", "."]
    assert [round(w, 4) for _, w in got] == [1.0, 1.573, 1.1, 1.0, 1.1, 0.55, 1.1, 1.4641, 1.1]


def test_tokens_carry_their_weights_and_embedding_tokens_can_be_weighted():
    tok = load_bundled_tokenizer("sd1")
    new_ids = add_new_tokens(tok, ["mychar4", "mychar41"])
    ids, weights, cut = tokenize_weighted(tok, "a (mychar4 mychar41:1.3) cat", 75)
    assert ids == [320, *new_ids, 2368] and not cut
    assert weights == [1.0, 1.3, 1.3, 1.0]


def test_windows_are_bos_content_eos_then_the_tokenizers_padding():
    for style, pad in (("sd1", 49407), ("sd2", 0)):
        tok = load_bundled_tokenizer(style)
        ids, weights, _ = tokenize_weighted(tok, "a photo", 75)
        windows, w = build_windows(tok, ids, weights, 2)
        assert windows.shape == (2, 77) and w.shape == (2, 77)
        assert windows[0, :4].tolist() == [49406, 320, 1125, 49407] and windows[0, 4:].eq(pad).all()
        assert windows[1, :2].tolist() == [49406, 49407] and windows[1, 2:].eq(pad).all()
        assert windows[0].tolist() == tok("a photo", padding="max_length", max_length=77).input_ids


def test_long_prompts_are_cut_at_max_embeddings_multiples():
    tok = load_bundled_tokenizer("sd1")
    ids, _, cut = tokenize_weighted(tok, "cat " * 200, 150)
    assert len(ids) == 150 and cut


def test_apply_weights_scales_positions_and_restores_the_mean():
    torch.manual_seed(0)
    hidden = torch.randn(1, 4, 8) + 1.0
    weights = torch.tensor([[1.0, 2.0, 1.0, 1.0]])
    out = apply_weights(hidden, weights)
    ratio = out / hidden
    assert torch.allclose(ratio[0, 1], 2 * ratio[0, 0]) and torch.allclose(ratio[0, 0], ratio[0, 3])
    assert torch.allclose(out.mean(), hidden.mean(), atol=1e-6)
    assert apply_weights(hidden, torch.ones(1, 4)) is hidden


# ---- the encoder ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_plain_prompts_encode_exactly_like_diffusers(pipes, family):
    pipe = pipes[family]
    ours = encoder_for(pipe, family).encode(["a photo of a cat"], ["blurry"])
    if family == "sdxl":
        pe, npe, pooled, npooled = pipe.encode_prompt("a photo of a cat", negative_prompt="blurry", device="cpu",
                                                      num_images_per_prompt=1, do_classifier_free_guidance=True)
        assert torch.equal(ours.pooled_prompt_embeds, pooled) and torch.equal(ours.negative_pooled_prompt_embeds, npooled)
    else:
        pe, npe = pipe.encode_prompt("a photo of a cat", "cpu", 1, True, negative_prompt="blurry")
    assert torch.equal(ours.prompt_embeds, pe) and torch.equal(ours.negative_prompt_embeds, npe)


@pytest.mark.parametrize("family, dim", [("sd1", 32), ("sd2", 48), ("sdxl", 32 + 64)])
def test_long_prompts_are_chunked_and_negatives_padded_to_match(pipes, family, dim):
    pipe = pipes[family]
    encoder = encoder_for(pipe, family)
    long_prompt = ", ".join(["a red cat"] * 30)  # 119 tokens: two chunks
    embeds = encoder.encode([long_prompt], [""])
    assert embeds.prompt_embeds.shape == (1, 154, dim) and embeds.negative_prompt_embeds.shape == (1, 154, dim)
    # the first chunk is the first 75 tokens encoded on their own
    tok = encoder.tokenizers[0]
    first_75 = tok.decode(tok(long_prompt, add_special_tokens=False).input_ids[:75])
    alone = encoder.encode_texts([first_75], num_chunks=1)[0]
    assert torch.allclose(embeds.prompt_embeds[:, :77], alone, atol=1e-5)
    # an empty negative prompt's second chunk is an empty window
    empty_window = encoder.encode_texts([""], num_chunks=1)[0]
    assert torch.allclose(embeds.negative_prompt_embeds[:, 77:], empty_window, atol=1e-6)


def test_prompts_longer_than_the_limit_are_truncated_and_noted(pipes):
    encoder = encoder_for(pipes["sd1"], "sd1", max_embeddings_multiples=2)
    embeds = encoder.encode(["cat " * 400], ["dog"])
    assert embeds.prompt_embeds.shape[1] == 154 and encoder.truncated == ["cat " * 400]


def test_weighting_changes_the_weighted_positions_relative_to_the_rest(pipes):
    encoder = encoder_for(pipes["sd1"], "sd1")
    plain = encoder.encode_texts(["a red cat"])[0]
    weighted = encoder.encode_texts(["a (red:1.5) cat"])[0]
    ratio = (weighted / plain)[0]
    # BOS, a, red, cat, EOS: "red" (position 2) is scaled 1.5x relative to the others
    assert torch.allclose(ratio[2], 1.5 * ratio[1], rtol=1e-4) and torch.allclose(ratio[1], ratio[3], rtol=1e-4)
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-5)


def test_clip_skip_uses_an_earlier_layer_through_the_final_norm(pipes):
    pipe = pipes["sd1"]
    skip2 = encoder_for(pipe, "sd1", clip_skip=2).encode_texts(["a cat"])[0]
    ids = pipe.tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    out = pipe.text_encoder(ids, output_hidden_states=True)
    final_layer_norm = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm  # transformers 5: no .text_model
    assert torch.allclose(skip2, final_layer_norm(out.hidden_states[-2]), atol=1e-6)
    assert not torch.allclose(skip2, out.last_hidden_state)


def test_sdxl_pools_at_the_first_eos_even_with_new_token_ids(pipes):
    pipe = build_tiny_pipeline("sdxl")
    for tok, te in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        add_new_tokens(tok, ["mychar4"])
        install_vectors(te, torch.randn(1, te.get_input_embeddings().embedding_dim), trainable=False)
    encoder = encoder_for(pipe, "sdxl")
    hidden, pooled = encoder.encode_texts(["a mychar4 cat"])
    ids = pipe.tokenizer_2("a mychar4 cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids.max() == 49408  # the new token outranks EOS: argmax over ids would pool at it
    final = pipe.text_encoder_2(ids, output_hidden_states=True).last_hidden_state
    eos = ids[0].tolist().index(49407)
    assert torch.allclose(pooled, pipe.text_encoder_2.text_projection(final[:, eos]), atol=1e-6)
    assert not torch.allclose(pooled, pipe.text_encoder_2.text_projection(final[:, ids[0].argmax()]), atol=1e-3)
    assert hidden.shape == (1, 77, 96)


def test_an_embedding_changes_only_prompts_that_use_it():
    pipe = build_tiny_pipeline("sd1")
    encoder = encoder_for(pipe, "sd1")
    before = {p: encoder.encode_texts([p])[0] for p in ("a photo of a cat", "a photo of mychar4")}
    add_new_tokens(pipe.tokenizer, ["mychar4"])
    install_vectors(pipe.text_encoder, torch.randn(1, 32), trainable=False)
    after = {p: encoder.encode_texts([p])[0] for p in before}
    assert torch.equal(before["a photo of a cat"], after["a photo of a cat"])
    assert not torch.allclose(before["a photo of mychar4"], after["a photo of mychar4"])
    # and the trigger can be weighted like any word
    weighted = encoder.encode_texts(["a photo of (mychar4:1.4)"])[0]
    assert not torch.allclose(weighted, after["a photo of mychar4"])


def test_rewrite_expands_a_trigger_before_tokenizing():
    pipe = build_tiny_pipeline("sd1")
    add_new_tokens(pipe.tokenizer, ["mychar4", "mychar41"])
    install_vectors(pipe.text_encoder, torch.randn(2, 32), trainable=False)
    rewrite = lambda text: text.replace("mychar4", "mychar4 mychar41")  # noqa: E731
    encoder = encoder_for(pipe, "sd1", rewrite=rewrite)
    direct = encoder_for(pipe, "sd1").encode_texts(["a (mychar4 mychar41:1.2)"])[0]
    assert torch.equal(encoder.encode_texts(["a (mychar4:1.2)"])[0], direct)
