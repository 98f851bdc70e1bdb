"""End-to-end specification of sdxl_train_textual_inversion.py on a tiny real SDXL model."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import load_file

import train_textual_inversion
from library.cli import run_main
from library.models.loading import load_models
from library.training.parser import parse_training_args
from library.training.loop import train
from sdxl_train_textual_inversion import main as sdxl_main
from tests.helpers.training import TOKEN, make_ti_dataset, train_argv

pytestmark = pytest.mark.training  # every test here runs the trainer; `make test-fast` leaves them out


def run_sdxl(argv: list[str]):
    return train(parse_training_args(argv, sdxl=True), sdxl=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_ti_dataset(tmp_path_factory.mktemp("sdxl_data"))


def test_both_encoders_train_nothing_else_changes_and_diffusers_loads_the_file(tiny_model_dir, tmp_path, dataset):
    model = tiny_model_dir("sdxl")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"a {TOKEN} on a white background --w 64 --h 64 --s 2 --d 3\n")
    result = run_sdxl(train_argv(model, dataset, tmp_path, "--cache_latents", f"--sample_prompts={prompts}", "--sample_every_n_steps=4"))

    fresh = load_models(str(model))
    for name in ("unet", "vae"):
        for (key, a), (_, b) in zip(getattr(result.models, name).state_dict().items(), getattr(fresh, name).state_dict().items()):
            assert torch.equal(a, b), f"{name}.{key} changed"
    for trained, original in zip(result.models.text_encoders, fresh.text_encoders):
        state = trained.state_dict()
        for key, value in original.state_dict().items():
            assert torch.equal(state[key.replace("token_embedding.weight", "token_embedding.base.weight")], value), key

    saved = load_file(str(tmp_path / "ti.safetensors"))
    assert set(saved) == {"clip_l", "clip_g"}
    assert saved["clip_l"].shape == (2, 32) and saved["clip_g"].shape == (2, 64)
    init = {slot: torch.stack([enc.get_input_embeddings().weight[tok("star", add_special_tokens=False).input_ids[0]]] * 2)
            for slot, enc, tok in zip(("clip_l", "clip_g"), fresh.text_encoders, fresh.tokenizers)}
    for slot in ("clip_l", "clip_g"):
        assert torch.equal(saved[slot], result.tokens.vectors_by_slot()[slot])
        assert not torch.allclose(saved[slot], init[slot]), f"{slot} did not train"
    assert len(list((tmp_path / "sample").glob("ti_000004_00_*_3.png"))) == 1

    # the documented diffusers way: clip_g into text_encoder_2, clip_l into text_encoder
    pipe = StableDiffusionXLPipeline.from_pretrained(str(model))
    names = [TOKEN, f"{TOKEN}1"]
    pipe.load_textual_inversion(saved["clip_g"], token=names, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    pipe.load_textual_inversion(saved["clip_l"], token=names, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    image = pipe(f"a {TOKEN} {TOKEN}1 on a white background", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0), output_type="np").images
    assert image.shape == (1, 64, 64, 3)


def test_resume_equals_uninterrupted_and_one_encoder_can_train_alone(tiny_model_dir, tmp_path, dataset):
    model = tiny_model_dir("sdxl")
    full = run_sdxl(train_argv(model, dataset, tmp_path / "full", "--save_every_n_steps=2", "--save_state", steps=4))
    resumed = run_sdxl(train_argv(model, dataset, tmp_path / "res", f"--resume={tmp_path / 'full' / 'ti-step00000002-state'}", steps=4))
    torch.testing.assert_close(resumed.tokens.vectors_by_slot(), full.tokens.vectors_by_slot(), rtol=0, atol=1e-6)

    only_g = run_sdxl(train_argv(model, dataset, tmp_path / "g", "--ti_text_encoders=g", steps=2))
    fresh = load_models(str(model))
    star_l = fresh.text_encoders[0].get_input_embeddings().weight[fresh.tokenizers[0]("star", add_special_tokens=False).input_ids[0]]
    vectors = only_g.tokens.vectors_by_slot()
    assert torch.equal(vectors["clip_l"][0], star_l)  # untouched
    assert [p.shape for p in only_g.tokens.parameters()] == [torch.Size([2, 64])]


def test_sdxl_specific_refusals(tiny_model_dir, tmp_path, dataset, capsys):
    model = tiny_model_dir("sdxl")
    assert run_main(sdxl_main, train_argv(model, dataset, tmp_path, "--cache_text_encoder_outputs")) == 2
    assert "cannot work for Textual Inversion" in capsys.readouterr().err
    assert run_main(train_textual_inversion.main, train_argv(model, dataset, tmp_path)) == 2
    assert "sdxl_train_textual_inversion.py" in capsys.readouterr().err
    assert run_main(sdxl_main, train_argv(tiny_model_dir("sd1"), dataset, tmp_path)) == 2
    assert "train_textual_inversion.py" in capsys.readouterr().err
