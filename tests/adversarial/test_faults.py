"""Faults during a run: a full disk, NaN, a second run on the same output, an existing output, kill -9 at every
point of the save path, and resuming after a kill."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_textual_inversion
from library import atomic
from library.training.state import load_state
from tests.adversarial.harness import REPO, assert_accepted, assert_refused, run_in_process, run_process


@pytest.fixture(autouse=True)
def _fresh_fault_counter():
    atomic._fault_counts.clear()
    yield
    atomic._fault_counts.clear()


@pytest.mark.training
def test_disk_full_during_a_save_is_one_line_naming_the_file_and_earlier_saves_survive(ctx, monkeypatch):
    monkeypatch.setenv(atomic.FAULT_ENV, "enospc:tmp-written:2")  # the second file the run writes finds the disk full
    outcome = run_in_process(train_textual_inversion.main, ctx.argv("--save_every_n_steps=1", steps=3))
    assert_refused(outcome, "ti-step00000002.safetensors", "disk is full")
    assert torch.isfinite(load_file(str(ctx.out / "ti-step00000001.safetensors"))["emb_params"]).all()
    assert ctx.good_is_untouched()
    assert not list(ctx.out.glob(".*.tmp"))  # the failed temp file was removed


@pytest.mark.training
def test_a_run_that_cannot_fit_its_saves_on_the_disk_is_refused_before_training(ctx, monkeypatch):
    import shutil

    from library.training import preflight

    real = shutil.disk_usage
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    outcome = run_in_process(train_textual_inversion.main, ctx.argv("--save_every_n_steps=1", "--save_state"))
    assert_refused(outcome, "--output_dir", "free", "need about")
    assert ctx.good_is_untouched()


@pytest.mark.training
def test_a_non_finite_loss_keeps_only_finite_vectors(ctx):
    argv = ctx.argv("--learning_rate=1e36", "--max_grad_norm=0", "--optimizer_type=SGDNesterov", steps=6)
    outcome = run_in_process(train_textual_inversion.main, argv)
    assert_refused(outcome, "the loss became", "--skip_nan")
    assert torch.isfinite(load_file(str(ctx.good))["emb_params"]).all()  # "last good" means finite


@pytest.mark.training
def test_an_existing_output_is_overwritten_as_sd_scripts_does_and_the_log_says_so(ctx, caplog):
    outcome = run_in_process(train_textual_inversion.main, ctx.argv())
    assert_accepted(outcome)
    assert not ctx.good_is_untouched()
    assert any("already exists" in r.getMessage() and str(ctx.good) in r.getMessage() for r in caplog.records)


@pytest.mark.training
def test_a_second_run_on_the_same_output_name_is_refused_while_the_first_runs(ctx):
    """Two runs writing NAME into one folder would interleave their step saves and retention; the second is refused."""
    lock = ctx.out / ".ti.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, b'4242', 0)\n"
        "print('locked', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        outcome = run_in_process(train_textual_inversion.main, ctx.argv())
        assert_refused(outcome, "--output_name ti", "another run (pid 4242)")
        assert ctx.good_is_untouched()
    finally:
        holder.kill()
        holder.wait()
    # a killed run's lock is gone with its process: the next run goes ahead
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


# --- kill -9 at every point of the writer -------------------------------------------------------------------

_WRITER = """
import sys
from pathlib import Path
from library.atomic import atomic_dir, atomic_path
kind, target, content = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if kind == "file":
    with atomic_path(target) as tmp:
        tmp.write_text(content)
else:
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text(content)
        (tmp / "b.txt").write_text(content)
"""


@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("point", atomic.FAULT_POINTS)
def test_kill_at_any_point_of_a_save_leaves_the_old_or_the_new_content_never_a_broken_one(tmp_path, kind, point):
    target = tmp_path / ("x.txt" if kind == "file" else "x-state")
    old = "old " * 1000
    if kind == "file":
        target.write_text(old)
    else:
        target.mkdir()
        for name in ("a.txt", "b.txt"):
            (target / name).write_text(old)
    env = {**os.environ, atomic.FAULT_ENV: point, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _WRITER, kind, str(target), "new " * 1000], env=env, capture_output=True, text=True)
    reached = proc.returncode == 137
    # old-moved exists in atomic_dir only, tmp-half (cutting the file being written) in atomic_path only
    assert reached or (kind, point) in (("file", "old-moved"), ("dir", "tmp-half")), proc.stderr
    if kind == "file":
        assert target.read_text() in (old, "new " * 1000)
    elif target.exists():
        assert {(target / n).read_text() for n in ("a.txt", "b.txt")} in ({old}, {"new " * 1000})
    else:  # killed between moving the old folder aside and renaming the new one in: the old one is whole
        assert point == "old-moved"
        kept = atomic.old_dir_name(target)
        assert {(kept / n).read_text() for n in ("a.txt", "b.txt")} == {old}
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(n.startswith(".") for n in leftovers), leftovers  # temp files stay hidden, never under the final name


def test_a_state_folder_interrupted_while_being_replaced_is_pointed_to(tmp_path):
    target = tmp_path / "ti-state"
    atomic.old_dir_name(target).mkdir()
    with pytest.raises(Exception, match=r"\.ti-state\.old is the complete previous state"):
        load_state(target)


def test_saved_files_get_the_users_umask_mode_not_the_temp_files_0600(tmp_path):
    from library.embeddings import save_embedding

    old = os.umask(0o022)
    try:
        path = tmp_path / "e.safetensors"
        save_embedding(path, {"emb_params": torch.zeros(2, 32)})
        with atomic.atomic_dir(tmp_path / "s-state") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert ((tmp_path / "s-state").stat().st_mode & 0o777) == 0o755


def _final_vectors(out: Path) -> torch.Tensor:
    return load_file(str(out / "ti.safetensors"))["emb_params"]


_KILL_FLAGS = ["--save_every_n_steps=2", "--save_state", "--optimizer_type=AdamW"]


@pytest.fixture(scope="module")
def straight_vectors(adversarial_world, tmp_path_factory) -> torch.Tensor:
    """The final vectors of an uninterrupted run, in a real process like the killed and resumed ones (same threads)."""
    from tests.helpers.training import train_argv

    model, data, _ = adversarial_world
    out = tmp_path_factory.mktemp("straight")
    assert_accepted(run_process("train_textual_inversion.py", train_argv(model, data, out, *_KILL_FLAGS, steps=4)))
    return _final_vectors(out)


@pytest.mark.training
@pytest.mark.slow
@pytest.mark.parametrize("point", ["tmp-created:3", "tmp-half:3", "tmp-synced:4", "renamed:4"])
def test_a_trainer_killed_during_a_save_leaves_only_whole_files_and_resumes_to_the_uninterrupted_result(ctx, point, straight_vectors):
    """kill -9 (os._exit from the writer's fault hook) at the step-4 save; resuming the step-2 state reaches the same vectors."""
    killed = run_process("train_textual_inversion.py", ctx.argv(*_KILL_FLAGS, steps=4), env={atomic.FAULT_ENV: point})
    assert killed.code == 137, killed.stderr[-2000:]
    assert "Traceback" not in killed.stderr
    assert ctx.good_is_untouched()  # the final save never happened
    for path in ctx.out.glob("*.safetensors"):
        assert torch.isfinite(load_file(str(path))["emb_params"]).all()  # every embedding under its final name is whole
    states = sorted(ctx.out.glob("ti-step*-state"))
    for state in states:
        load_state(state)  # every state folder under its final name is whole
    first_state = ctx.out / "ti-step00000002-state"  # writes 1-2 are step 2's embedding and state, 3-4 step 4's
    assert first_state in states

    resumed = run_process("train_textual_inversion.py", ctx.argv(*_KILL_FLAGS, f"--resume={first_state}", steps=4))
    assert_accepted(resumed)
    assert torch.equal(_final_vectors(ctx.out), straight_vectors)


def test_progress_file_written_by_a_killed_run_is_never_half_json(tmp_path):
    """The state's progress.json is inside the atomically renamed folder: it is whole or absent."""
    env = {**os.environ, atomic.FAULT_ENV: "tmp-written", "PYTHONPATH": str(REPO)}
    code = ("import json, sys; from pathlib import Path; from library.atomic import atomic_dir\n"
            "with atomic_dir(Path(sys.argv[1])) as t: (t / 'progress.json').write_text(json.dumps({'global_step': 2}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], env=env)
    assert proc.returncode == 137 and not (tmp_path / "s").exists()
    assert all(p.name.startswith(".") for p in tmp_path.iterdir())
