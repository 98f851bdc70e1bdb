"""Specification of load_models: diffusers directories, single files, flags, VAE, tokenizers, bad input."""

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from library.errors import UserError
from library.models.loading import load_models
from library.models.original_format import vae_to_original
from library.models.tiny import build_tiny_components
from library.token_embedding import install_vectors

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


def _modules(models):
    return {"unet": models.unet, "vae": models.vae, **{f"text_encoder_{i}": m for i, m in enumerate(models.text_encoders)}}


def _assert_same_weights(a, b):
    for name, module in _modules(a).items():
        sa, sb = module.state_dict(), _modules(b)[name].state_dict()
        assert set(sa) == set(sb), name
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key}"


def _unet_output(models):
    """The UNet on a fixed input (SDXL also gets pooled text embeddings and size/crop ids)."""
    unet = models.unet
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=gen)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen)
    kwargs = {}
    if models.family == "sdxl":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=gen),
                                       "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}
    with torch.no_grad():
        return unet(sample, 10, context, **kwargs).sample


@pytest.mark.parametrize("family, v", [("sd1", False), ("sd2", True), ("sdxl", False)])
def test_single_file_loads_the_same_model_as_the_directory(tiny_model_dir, tiny_single_file, family, v):
    from_dir = load_models(str(tiny_model_dir(family)))
    from_file = load_models(str(tiny_single_file(family)))
    for models in (from_dir, from_file):
        assert (models.family, models.v_parameterization) == (family, v)
        assert models.noise_scheduler.config.prediction_type == ("v_prediction" if v else "epsilon")
        assert len(models.text_encoders) == len(models.tokenizers) == (2 if family == "sdxl" else 1)
    _assert_same_weights(from_dir, from_file)
    # bitwise-equal weights; CPU kernels round differently with memory alignment, so outputs agree to ~1e-6
    torch.testing.assert_close(_unet_output(from_dir), _unet_output(from_file), rtol=0, atol=1e-5)
    assert type(from_file.text_encoders[-1]).__name__ == ("CLIPTextModelWithProjection" if family == "sdxl" else "CLIPTextModel")


def test_models_are_frozen_on_cpu_in_eval_mode(tiny_single_file):
    models = load_models(str(tiny_single_file("sdxl")))
    for module in _modules(models).values():
        assert not module.training
        assert all(not p.requires_grad and p.device.type == "cpu" for p in module.parameters())


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_dtype(tiny_model_dir, tiny_single_file, kind):
    source = tiny_model_dir("sd1") if kind == "dir" else tiny_single_file("sd1")
    models = load_models(str(source), dtype=torch.bfloat16)
    assert {p.dtype for m in _modules(models).values() for p in m.parameters()} == {torch.bfloat16}


def test_ckpt_with_state_dict_wrapper(tiny_model_dir, tiny_single_file):
    from_ckpt = load_models(str(tiny_single_file("sd1", suffix=".ckpt")))
    _assert_same_weights(load_models(str(tiny_model_dir("sd1"))), from_ckpt)


def test_bundled_tokenizers(tiny_single_file):
    for family in ("sd1", "sd2", "sdxl"):
        models = load_models(str(tiny_single_file(family)))
        for tokenizer in models.tokenizers:
            assert tokenizer("a photo of a cat").input_ids == CAT_IDS
        # OpenCLIP-style encoders (SD2, SDXL's second) pad with "!" (id 0), CLIP-L with <|endoftext|>
        expected = {"sd1": ["<|endoftext|>"], "sd2": ["!"], "sdxl": ["<|endoftext|>", "!"]}[family]
        assert [t.pad_token for t in models.tokenizers] == expected


def test_tokenizer_cache_dir_keeps_a_copy(tiny_single_file, tmp_path):
    cache = tmp_path / "tokenizers"
    first = load_models(str(tiny_single_file("sdxl")), tokenizer_cache_dir=str(cache))
    assert (cache / "sd1" / "tokenizer_config.json").is_file() and (cache / "sd2" / "tokenizer_config.json").is_file()
    again = load_models(str(tiny_single_file("sdxl")), tokenizer_cache_dir=str(cache))
    for a, b in zip(first.tokenizers, again.tokenizers):
        assert a("a photo of a cat").input_ids == b("a photo of a cat").input_ids == CAT_IDS
        assert a.pad_token == b.pad_token
    assert all(t.name_or_path.startswith(str(cache)) for t in again.tokenizers)  # read back from the cache


# --- single files: detection, flags, configs ---


def test_sd2_file_without_prediction_metadata_follows_v_parameterization(tiny_single_file):
    path = str(tiny_single_file("sd2", prediction=None))
    assert load_models(path).v_parameterization is False  # as sd-scripts: epsilon unless --v_parameterization
    models = load_models(path, v2=True, v_parameterization=True)
    assert models.v_parameterization and models.noise_scheduler.config.prediction_type == "v_prediction"


def test_flag_contradicting_the_file_is_refused(tiny_single_file):
    with pytest.raises(UserError, match="--v2 was given but this is an SD 1.x model"):
        load_models(str(tiny_single_file("sd1")), v2=True)
    with pytest.raises(UserError, match="use the SDXL script"):
        load_models(str(tiny_single_file("sdxl")), sdxl=False)


def test_non_standard_architecture_needs_its_config(tiny_model_dir, tiny_single_file):
    path = str(tiny_single_file("sd1", embed_config=False))
    # without the embedded config the bundled full-size SD1.5 config is used, which the tiny weights do not fit
    with pytest.raises(UserError, match="do not fit the standard SD 1.x architecture.*config_dir"):
        load_models(path)
    models = load_models(path, config_dir=str(tiny_model_dir("sd1")))
    _assert_same_weights(load_models(str(tiny_model_dir("sd1"))), models)


def test_separate_vae(tiny_model_dir, tmp_path):
    other = build_tiny_components("sd1", seed=1)["vae"]
    expected = other.state_dict()
    # a standalone VAE file in the original layout (no first_stage_model. prefix), as vae-ft-mse files are
    vae_file = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in vae_to_original(expected, other.config).items()}, str(vae_file))
    vae_dir = tmp_path / "vae_dir"
    other.save_pretrained(str(vae_dir))
    for value in (vae_file, vae_dir):
        models = load_models(str(tiny_model_dir("sd1")), vae=str(value))
        loaded = models.vae.state_dict()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), value
        assert not models.vae.training and not any(p.requires_grad for p in models.vae.parameters())
    # a whole diffusers model directory: its vae/ subfolder
    models = load_models(str(tiny_model_dir("sd1")), vae=str(tiny_model_dir("sdxl")))
    assert torch.equal(models.vae.encoder.conv_in.weight, load_models(str(tiny_model_dir("sdxl"))).vae.encoder.conv_in.weight)


# --- the pooled-output gotcha ---


def test_eos_token_id_is_forced_so_new_tokens_do_not_move_the_pooled_output(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "eos2"
    shutil.copytree(tiny_model_dir("sdxl"), model_dir)
    for sub in ("text_encoder", "text_encoder_2"):  # what many published configs say
        config = json.loads((model_dir / sub / "config.json").read_text())
        config.update(eos_token_id=2, bos_token_id=0)
        (model_dir / sub / "config.json").write_text(json.dumps(config))
    models = load_models(str(model_dir))
    encoder = models.text_encoders[1]
    assert encoder.config.eos_token_id == 49407
    assert all(m.eos_token_id == 49407 for m in encoder.modules() if hasattr(m, "eos_token_id"))

    install_vectors(encoder, torch.randn(1, encoder.config.hidden_size))  # a new token, id 49408
    ids = torch.tensor([[49406, 49408, 320, 2368, 49407] + [0] * 72])
    with torch.no_grad():
        out = encoder(ids, output_hidden_states=True)
        at_eos = encoder.text_projection(out.last_hidden_state[:, 4])
        assert torch.allclose(out.text_embeds, at_eos)
        # with the config's eos_token_id=2, transformers would pool at argmax(ids): the new token
        for module in encoder.modules():
            if hasattr(module, "eos_token_id"):
                module.eos_token_id = 2
        assert not torch.allclose(encoder(ids).text_embeds, at_eos)


# --- bad input: each one clear UserError ---


class NotATensor:
    """Saved inside a .ckpt, it makes the file need full pickle loading."""


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        load_models(str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match="no such file or directory"):
        load_models("./models/sd15")


def test_text_file_renamed_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(UserError, match="not a readable .safetensors file"):
        load_models(str(path))


def test_truncated_safetensors(tiny_single_file, tmp_path):
    data = tiny_single_file("sd1").read_bytes()
    path = tmp_path / "partial.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"partial.safetensors: the file is cut short: \d+ of \d+ bytes"):
        load_models(str(path))


def test_ckpt_needing_full_pickle_is_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.out.2.weight": torch.zeros(1)}, "extra": NotATensor()}, path)
    with pytest.raises(UserError, match="refused: the file.s pickle needs the Python object .*safetensors"):
        load_models(str(path))


def test_unrelated_weights(tmp_path):
    path = tmp_path / "classifier.safetensors"
    save_file({"backbone.conv.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(UserError, match="not a Stable Diffusion 1.x/2.x/SDXL checkpoint"):
        load_models(str(path))


def test_checkpoint_without_text_encoder(tiny_model_dir, tiny_single_file, tmp_path):
    from safetensors.torch import load_file

    state = {k: v for k, v in load_file(str(tiny_single_file("sd1"))).items() if not k.startswith("cond_stage_model.")}
    path = tmp_path / "unet_vae.safetensors"
    save_file(state, str(path))
    with pytest.raises(UserError, match="cannot tell"):  # tiny widths: nothing says which family
        load_models(str(path))
    with pytest.raises(UserError, match="no text encoder weights"):
        load_models(str(path), v2=True, config_dir=str(tiny_model_dir("sd1")))


def test_unsupported_file_type_and_non_model_directory(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("x")
    with pytest.raises(UserError, match="unsupported file type"):
        load_models(str(path))
    with pytest.raises(UserError, match="not a diffusers model directory"):
        load_models(str(tmp_path))


def test_hub_id_offline_says_what_to_pass(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_models("runwayml/stable-diffusion-v1-5")
    message = str(err.value)
    assert "\n" not in message
    assert "offline" in message and "diffusers model directory" in message and ".safetensors/.ckpt" in message


def test_diffusers_dir_with_incomplete_text_encoder(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    model_dir = tmp_path / "incomplete"
    shutil.copytree(tiny_model_dir("sd1"), model_dir)
    weights = model_dir / "text_encoder" / "model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items() if "final_layer_norm" not in k}
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(UserError, match="its text_encoder lacks 2 weights"):
        load_models(str(model_dir))
