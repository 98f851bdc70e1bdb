"""Specification of the trainable tokens' two views: the live vectors that train, and the vectors a run publishes.

Embedding files and sample images go through `published_vectors()`; resumable states hold the live vectors. Today
both are equal; the tests pin the seam by publishing something else and watching every consumer follow.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import train_textual_inversion
from library.models.loading import load_models
from library.training.config_file import parse_args_with_config
from library.training.loop import train
from library.training.trainable_tokens import TrainableTokens, setup_trainable_tokens
from tests.helpers.training import TOKEN, make_ti_dataset, train_argv


@pytest.fixture
def sd1_tokens(tiny_model_dir):
    models = load_models(str(tiny_model_dir("sd1")))
    tokens = setup_trainable_tokens(models.tokenizers, models.text_encoders, ["emb_params"], token_string=TOKEN, num_vectors=2, init_word="star")
    return models, tokens


def _embedded(models, tokens) -> torch.Tensor:
    """What the text encoder's embedding layer returns for the new token ids."""
    ids = torch.tensor([tokens.ids[0]])
    with torch.no_grad():
        return models.text_encoders[0].get_input_embeddings()(ids)[0].float()


def test_published_vectors_are_the_live_ones_as_a_detached_copy(sd1_tokens):
    _, tokens = sd1_tokens
    published = tokens.published_vectors()
    assert set(published) == {"emb_params"}
    assert torch.equal(published["emb_params"], tokens.parameters()[0].detach())
    published["emb_params"].add_(1.0)  # a consumer changing its copy does not touch training
    assert not torch.equal(published["emb_params"], tokens.parameters()[0].detach())


def test_within_published_the_encoder_embeds_the_published_vectors_then_the_live_ones_again(sd1_tokens, monkeypatch):
    models, tokens = sd1_tokens
    live = tokens.vectors_by_slot()["emb_params"]
    shifted = {"emb_params": live + 0.5}
    monkeypatch.setattr(tokens, "published_vectors", lambda: {k: v.clone() for k, v in shifted.items()})
    with tokens.published():
        assert torch.equal(_embedded(models, tokens), shifted["emb_params"])
    assert torch.equal(_embedded(models, tokens), live)
    with pytest.raises(RuntimeError), tokens.published():
        raise RuntimeError("sampling failed")
    assert torch.equal(tokens.vectors_by_slot()["emb_params"], live)  # restored on errors too


@pytest.mark.training
def test_files_and_samples_follow_the_published_vectors_and_states_keep_the_live_ones(tiny_model_dir, tmp_path, monkeypatch):
    real = TrainableTokens.published_vectors
    seen_while_sampling = []

    def published_plus_one(self):
        return {slot: vectors + 1.0 for slot, vectors in real(self).items()}

    import library.sampling as sampling

    real_sample_images = sampling.sample_images

    def recording_sample_images(models, *args, **kwargs):
        seen_while_sampling.append(models.text_encoders[0].get_input_embeddings().vectors.detach().float().cpu().clone())
        return real_sample_images(models, *args, **kwargs)

    monkeypatch.setattr(TrainableTokens, "published_vectors", published_plus_one)
    monkeypatch.setattr(sampling, "sample_images", recording_sample_images)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"a {TOKEN} --w 64 --h 64 --s 1 --d 1\n")
    argv = train_argv(tiny_model_dir("sd1"), make_ti_dataset(tmp_path / "data"), tmp_path / "out", "--save_state_on_train_end",
                      f"--sample_prompts={prompts}", "--sample_every_n_steps=2", steps=2)
    result = train(parse_args_with_config(train_textual_inversion.setup_parser(), argv), sdxl=False)

    live = result.tokens.vectors_by_slot()["emb_params"]
    assert torch.equal(load_file(str(tmp_path / "out" / "ti.safetensors"))["emb_params"], live + 1.0)
    assert torch.equal(load_file(str(tmp_path / "out" / "ti-state" / "vectors.safetensors"))["emb_params"], live)
    assert len(seen_while_sampling) == 1 and torch.equal(seen_while_sampling[0], live + 1.0)
