"""Smoke runs of tools/benchmark.py and tools/make_random_model.py on tiny models: the fields exist and are
positive. No timing is asserted (speed is measured by the benchmark, never by tests)."""

import json

import pytest
import torch

from library.cli import run_main
from tests.helpers.tools import load_tool


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each run builds an Accelerator; accelerate keeps one process-wide state that refuses a new precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.training  # the benchmark runs the trainer
@pytest.mark.parametrize("model", ["tiny-sd1", "tiny-sdxl"])
def test_benchmark_smoke_writes_positive_numbers(tmp_path, model):
    bench = load_tool("benchmark")
    out = tmp_path / "bench.json"
    assert run_main(bench.main, ["--model", model, "--steps", "2", "--warmup", "1", "--profile", "1",
                                 "--cache_latents", "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["sdxl"] is (model == "tiny-sdxl")
    assert result["timed_steps"] == 2 and len(result["step_s_all"]) == 2
    for key in ("step_s_median", "step_s_min", "step_s_max", "floor_s_median", "step_over_floor_median",
                "setup_s", "time_to_first_step_s", "first_step_s", "peak_rss_bytes", "setup_peak_rss_bytes",
                "memory_first_timed_step_bytes", "memory_last_step_bytes"):
        assert result[key] > 0, key
    assert result["setup_peak_rss_bytes"] <= result["peak_rss_bytes"]
    assert result["memory_growth_bytes"] == result["memory_last_step_bytes"] - result["memory_first_timed_step_bytes"]
    assert result["floor_s_by_shape"] and all(v > 0 for v in result["floor_s_by_shape"].values())
    assert result["profile_top"] and all(row["self_ms"] >= 0 for row in result["profile_top"])


@pytest.mark.training  # the benchmark runs the trainer
def test_benchmark_passes_unknown_flags_to_the_trainer(tmp_path):
    bench = load_tool("benchmark")
    out = tmp_path / "bench.json"
    assert run_main(bench.main, ["--model", "tiny-sd1", "--steps", "1", "--warmup", "0", "--mixed_precision", "bf16",
                                 "--clip_skip", "2", "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["extra_flags"] == ["--clip_skip", "2"] and result["step_s_median"] > 0


@pytest.mark.training  # the benchmark runs the trainer
def test_benchmark_with_regularisation_images_times_the_skipped_backwards_apart(tmp_path):
    bench = load_tool("benchmark")
    out = tmp_path / "bench.json"
    assert run_main(bench.main, ["--model", "tiny-sd1", "--steps", "16", "--reg_images", "--cache_latents",
                                 "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["warmup_steps"] == result["batches_per_epoch"] >= 16  # one epoch: 8 images and 8 regularisation images
    assert 0 < result["skipped_backward_steps"] < result["timed_steps"] == 16
    assert result["step_s_median_skipped_backward"] > 0 and result["step_s_median_with_backward"] > 0


def test_random_model_tools_builds_finite_weights_offline(tmp_path):
    """The builder's init on a real (small) config: every tensor finite and materialised, buffers rebuilt."""
    make = load_tool("make_random_model")
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=99, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=77)
    with torch.device("meta"):
        model = CLIPTextModel(config)
    model = make._materialise(model, torch.bfloat16, torch.Generator().manual_seed(0))
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert not tensor.is_meta and torch.isfinite(tensor.float()).all(), name
    positions = [b for n, b in model.named_buffers() if n.endswith("position_ids")]
    assert positions and torch.equal(positions[0][0], torch.arange(77))
    norms = [p for n, p in model.named_parameters() if "layer_norm" in n and n.endswith("weight")]
    assert norms and all(p.eq(1).all() for p in norms)
    out = model(torch.tensor([[49406 % 99, 5, 7]])).last_hidden_state
    assert torch.isfinite(out.float()).all()


@pytest.mark.slow
@pytest.mark.training  # three trainer processes on the toy model
def test_compare_concepts_times_two_single_runs_and_one_two_concept_run(tmp_path, capsys):
    bench = load_tool("benchmark")
    out = tmp_path / "concepts.json"
    assert run_main(bench.main, ["--compare_concepts", "--steps", "2", "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["steps_per_concept"] == 2 and set(result["single_runs_s"]) == {"toyxstar", "toyxcross"}
    assert result["two_single_runs_s"] == pytest.approx(sum(result["single_runs_s"].values()))
    assert result["ratio"] == pytest.approx(result["two_concept_run_s"] / result["two_single_runs_s"])
    assert all(v > 0 for values in result["all_s"].values() for v in values)
    both = tmp_path / "work" / "both"
    assert (both / "toyxstar.safetensors").is_file() and (both / "toyxcross.safetensors").is_file()
    assert "x the two single runs" in capsys.readouterr().out


def test_benchmark_needs_a_model_unless_comparing_concepts(capsys):
    bench = load_tool("benchmark")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--steps", "2"])
    assert exit_info.value.code == 2 and "--model is required" in capsys.readouterr().err
