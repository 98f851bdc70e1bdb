"""Specification of the resumable state: small, complete, and read back safely."""

import pytest
import torch

from library.errors import UserError
from library.training.state import Progress, load_state, save_state


def _optimizer_and_scheduler():
    vectors = torch.nn.Parameter(torch.randn(4, 8))
    opt = torch.optim.AdamW([vectors], lr=1e-3)
    vectors.grad = torch.ones_like(vectors)
    opt.step()
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.5, total_iters=10)
    sched.step()
    return vectors, opt, sched


def test_state_round_trips_and_stays_small(tmp_path):
    vectors, opt, sched = _optimizer_and_scheduler()
    progress = Progress(global_step=7, epoch=1, batches_in_epoch=3, seed=42, token_names=["a", "a1"], slots=["emb_params"])
    save_state(tmp_path / "x-state", {"emb_params": vectors.detach()}, opt, sched, progress)
    size = sum(p.stat().st_size for p in (tmp_path / "x-state").iterdir())
    assert size < 64 * 1024
    got_vectors, opt_state, sched_state, got = load_state(tmp_path / "x-state")
    assert torch.equal(got_vectors["emb_params"], vectors.detach())
    assert got == progress
    assert torch.equal(opt_state["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert sched_state["last_epoch"] == 1


def test_resume_errors_name_the_folder(tmp_path):
    with pytest.raises(UserError, match="no such state folder"):
        load_state(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="missing vectors.safetensors"):
        load_state(tmp_path / "empty")


def test_a_failed_write_leaves_the_previous_state(tmp_path):
    vectors, opt, sched = _optimizer_and_scheduler()
    target = tmp_path / "x-state"
    save_state(target, {"emb_params": vectors.detach()}, opt, sched, Progress(global_step=1))

    class Broken:
        def state_dict(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_state(target, {"emb_params": vectors.detach()}, opt, Broken(), Progress(global_step=2))
    assert load_state(target)[3].global_step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x-state"]
