"""Several concepts in one run (issue 17), end to end on the tiny SD 1.x model: one embedding file per concept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from library.errors import UserError
from library.toyworld.world import caption, make_dataset
from library.training.loop import train
from library.training.parser import parse_training_args, run_training as run
from tests.helpers.training import TOKEN, train_argv

SECOND = "toyxcube"

pytestmark = pytest.mark.training  # the trainer runs end to end here; `make test-fast` leaves these out


def make_two_concept_dataset(root: Path, *, extra_general: str = "", second_keys: str = "") -> Path:
    """Two image folders: the first trains the command-line concept (TOKEN), the second names its own concept."""
    first, second = root / "first", root / "second"
    make_dataset(first, 4, seed=1, include=[("purple", "star")], caption_fn=lambda s: caption(s, subject=TOKEN))
    make_dataset(second, 2, seed=2, include=[("orange", "cross")], caption_fn=lambda s: caption(s, subject=SECOND))
    config = root / "dataset.toml"
    config.write_text(
        f"[general]\ncaption_extension = '.txt'\n{extra_general}[[datasets]]\nresolution = 64\nbatch_size = 2\n"
        f"[[datasets.subsets]]\nimage_dir = '{first.as_posix()}'\n"
        f"[[datasets.subsets]]\nimage_dir = '{second.as_posix()}'\ntoken_string = '{SECOND}'\ninit_word = 'cross'\n"
        f"num_vectors_per_token = 1\nnum_repeats = 2\n{second_keys}"
    )
    return config



@pytest.fixture(scope="module")
def two_concepts(tmp_path_factory):
    return make_two_concept_dataset(tmp_path_factory.mktemp("concepts"))


@pytest.mark.slow
def test_two_concepts_train_in_one_run_and_each_gets_its_own_file(tiny_model_dir, tmp_path, two_concepts, capsys):
    result = run(train_argv(tiny_model_dir("sd1"), two_concepts, tmp_path, "--save_every_n_steps=2", steps=4))
    first, second = result.tokens.concepts
    assert (first.token_string, first.num_vectors, second.token_string, second.num_vectors) == (TOKEN, 2, SECOND, 1)
    # the command-line concept keeps --output_name; the dataset's concept is named by its token string
    assert [p.name for p in result.output_files] == ["ti.safetensors", f"{SECOND}.safetensors"]
    assert (tmp_path / "ti-step00000002.safetensors").is_file() and (tmp_path / f"{SECOND}-step00000002.safetensors").is_file()
    assert torch.equal(load_file(str(tmp_path / "ti.safetensors"))["emb_params"], first.vectors_by_slot()["emb_params"])
    assert torch.equal(load_file(str(tmp_path / f"{SECOND}.safetensors"))["emb_params"], second.vectors_by_slot()["emb_params"])
    # both concepts moved away from their init words: each received its gradient
    encoder, tokenizer = result.models.text_encoders[0], result.models.tokenizers[0]
    for unit, word in ((first, "star"), (second, "cross")):
        row = encoder.get_input_embeddings().weight[tokenizer(word, add_special_tokens=False).input_ids[0]].float()
        assert not torch.allclose(unit.vectors_by_slot()["emb_params"][0], row.cpu()), unit.token_string
    out = capsys.readouterr().out
    assert "concepts:         2" in out and f"'{SECOND}': 1 vector(s)" in out and "4 images (4 with repeats)" in out
    assert "2 images (4 with repeats)" in out


def _single_concept_configs(root: Path, two_concepts: Path) -> tuple[Path, Path]:
    """Each concept's subset alone in its own dataset TOML: the configs of the two runs a two-concept run replaces."""
    text = two_concepts.read_text()
    head, first, second = text.split("[[datasets.subsets]]")
    one, two = root / "first.toml", root / "second.toml"
    one.write_text(head + "[[datasets.subsets]]" + first)
    two.write_text(head + "[[datasets.subsets]]" + second)
    return one, two


def test_lockstep_gives_each_concept_the_batches_of_its_own_run(tiny_model_dir, tmp_path):
    from library.dataset.group import build_dataset_group
    from library.dataset.lockstep import ConceptLockstep
    from library.training import data_setup
    from library.training.concepts import resolve_concepts

    # the second concept has 1 batch per epoch, the first 2: the second starts its next epoch every step
    config = make_two_concept_dataset(tmp_path, second_keys="")
    config.write_text(config.read_text().replace("num_repeats = 2", "num_repeats = 1"))
    args = parse_training_args(train_argv(tiny_model_dir("sd1"), config, tmp_path))
    params = data_setup.dataset_params(args)
    concepts = resolve_concepts(params, args)
    lockstep = ConceptLockstep(build_dataset_group(params, seed=7, concept_tokens=[c.token_string for c in concepts]), 2)
    assert len(lockstep) == 2 and [len(v) for v in lockstep.views] == [2, 1]

    singles = []
    for single_config in _single_concept_configs(tmp_path, config):
        single_args = parse_training_args(train_argv(tiny_model_dir("sd1"), single_config, tmp_path))
        singles.append(build_dataset_group(data_setup.dataset_params(single_args), seed=7))
    for epoch in range(3):
        lockstep.set_epoch(epoch)
        for index in range(len(lockstep)):
            step = epoch * len(lockstep) + index
            for concept, batch in enumerate(lockstep[index]["concept_batches"]):
                own = singles[concept]
                expected = own.batch_at(*divmod(step, len(own)))
                assert batch["concept"] == concept
                assert batch["image_paths"] == expected["image_paths"] and batch["captions"] == expected["captions"]
                assert torch.equal(batch["images"], expected["images"])


def test_regularization_images_join_one_concept_and_are_balanced_as_in_its_own_run(tiny_model_dir, tmp_path):
    from library.dataset.group import build_dataset_group
    from library.dataset.lockstep import ConceptLockstep
    from library.training import data_setup
    from library.training.concepts import resolve_concepts

    config = make_two_concept_dataset(tmp_path)
    reg = tmp_path / "reg"
    make_dataset(reg, 3, seed=3, include=[("green", "circle")], caption_fn=caption)
    reg_subset = f"[[datasets.subsets]]\nimage_dir = '{reg.as_posix()}'\nis_reg = true\n"
    config.write_text(config.read_text() + reg_subset)
    args = parse_training_args(train_argv(tiny_model_dir("sd1"), config, tmp_path))
    params = data_setup.dataset_params(args)
    concepts = resolve_concepts(params, args)
    lockstep = ConceptLockstep(build_dataset_group(params, seed=7, concept_tokens=[c.token_string for c in concepts]), 2)

    head, first, _second, _reg = config.read_text().split("[[datasets.subsets]]")
    alone = tmp_path / "first_with_reg.toml"  # the command-line concept's own run: its images and the reg images
    alone.write_text(head + "[[datasets.subsets]]" + first + reg_subset)
    own = build_dataset_group(data_setup.dataset_params(parse_training_args(train_argv(tiny_model_dir("sd1"), alone, tmp_path))), seed=7)
    assert own.num_reg_images == 3 and len(lockstep.views[0]) == len(own) == 4  # 4 star images + 4 reg draws, batch 2
    for epoch in range(2):
        lockstep.set_epoch(epoch)
        for index in range(len(lockstep)):
            batch = lockstep[index]["concept_batches"][0]
            assert batch["image_paths"] == own.batch_at(epoch, index)["image_paths"]
    assert not any(str(reg) in p for i in range(len(lockstep)) for p in lockstep[i]["concept_batches"][1]["image_paths"])


OWN_RATE = 0.05  # the second concept's own learning_rate in the per-concept-rate cases


@pytest.mark.parametrize("flags, own_rate", [
    ((), None),
    (("--max_grad_norm=1e-4", "--optimizer_type=SGDNesterov", "--learning_rate=1e2"), None),
    (("--optimizer_type=AdamW", "--lr_scheduler=cosine", "--lr_warmup_steps=1"), OWN_RATE),
    (("--optimizer_type=Adafactor", "--optimizer_args", "relative_step=False", "scale_parameter=False"), OWN_RATE),
    (("--optimizer_type=AdamWScheduleFree",), OWN_RATE),
    (("--separate_concept_passes", "--max_grad_norm=1e-4"), OWN_RATE),
], ids=["adamw", "clipped-sgd", "own-rate-cosine", "own-rate-adafactor", "own-rate-schedule-free", "separate-passes"])
def test_a_two_concept_run_trains_each_concept_as_its_own_run_would(tiny_model_dir, tmp_path, flags, own_rate):
    # clipped: a norm shared by the concepts would shrink each one's step by the other's gradient;
    # own rate: the second concept's learning_rate key gives it the rate its own run would get from --learning_rate
    model = tiny_model_dir("sd1")
    config = make_two_concept_dataset(tmp_path / "data", second_keys=f"learning_rate = {own_rate}\n" if own_rate else "")
    both = run(train_argv(model, config, tmp_path / "both", *flags, steps=3))
    first_config, second_config = _single_concept_configs(tmp_path, config)
    first = run(train_argv(model, first_config, tmp_path / "first", *flags, steps=3))
    second_argv = [a for a in train_argv(model, second_config, tmp_path / "second", *flags, steps=3)
                   if not a.startswith(("--token_string", "--init_word", "--num_vectors_per_token"))]
    if own_rate:
        second_config.write_text(second_config.read_text().replace(f"learning_rate = {own_rate}\n", ""))
        second_argv = [a for a in second_argv if not a.startswith("--learning_rate")] + [f"--learning_rate={own_rate}"]
    second = run(second_argv)
    vectors = both.tokens.vectors_by_slot()
    torch.testing.assert_close(vectors[f"emb_params/{TOKEN}"], first.tokens.vectors_by_slot()["emb_params"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vectors[f"emb_params/{SECOND}"], second.tokens.vectors_by_slot()["emb_params"], rtol=1e-5, atol=1e-6)
    assert both.global_step == first.global_step == second.global_step == 3
    assert both.skipped_backwards == 0  # every batch holds its concept's token: every backward ran


@pytest.mark.slow
def test_resumed_two_concept_run_equals_an_uninterrupted_one(tiny_model_dir, tmp_path, two_concepts):
    model = tiny_model_dir("sd1")
    full = run(train_argv(model, two_concepts, tmp_path / "full", steps=4))
    run(train_argv(model, two_concepts, tmp_path / "part", "--save_every_n_steps=2", "--save_state", steps=4))
    state = tmp_path / "part" / "ti-step00000002-state"
    resumed = run(train_argv(model, two_concepts, tmp_path / "resumed", f"--resume={state}", steps=4))
    torch.testing.assert_close(resumed.tokens.vectors_by_slot(), full.tokens.vectors_by_slot(), rtol=0, atol=1e-6)
    assert set(full.tokens.vectors_by_slot()) == {f"emb_params/{TOKEN}", f"emb_params/{SECOND}"}


def _group(config: Path, tmp_path: Path, *flags: str):
    from library.dataset.group import build_dataset_group
    from library.training import data_setup
    from library.training.concepts import resolve_concepts

    args = parse_training_args(train_argv(tmp_path, config, tmp_path, *flags))
    params = data_setup.dataset_params(args)
    concepts = resolve_concepts(params, args)
    return build_dataset_group(params, concept_tokens=[c.token_string for c in concepts]), concepts


def test_a_concept_whose_token_is_in_none_of_its_captions_is_refused_naming_it(tmp_path):
    from library.training.data_setup import check_concepts

    config = make_two_concept_dataset(tmp_path, second_keys="caption_prefix = 'a photo, '\n")
    text = config.read_text().replace(f"token_string = '{SECOND}'", "token_string = 'toyxnever'")
    config.write_text(text)
    group, concepts = _group(config, tmp_path)
    with pytest.raises(UserError, match=r"none of the 2 captions of the concept 'toyxnever' \(datasets\[0\]\.subsets\[1\]\)"):
        check_concepts(group, concepts, templates_used=False)
    check_concepts(group, concepts, templates_used=True)  # templates write the token into every caption


def test_a_concept_of_only_regularization_images_has_no_images(tmp_path):
    from library.training.data_setup import check_concepts

    config = make_two_concept_dataset(tmp_path, second_keys="is_reg = true\n")
    group, concepts = _group(config, tmp_path)
    assert [c.token_string for c in concepts] == [TOKEN]  # a reg subset teaches no concept: none is created for it
    check_concepts(group, concepts, templates_used=False)


def test_without_token_string_every_training_subset_must_name_its_concept(tmp_path):
    from library.training.flag_rules import check_training_flags

    config = make_two_concept_dataset(tmp_path)
    argv = [a for a in train_argv(tmp_path, config, tmp_path) if not a.startswith("--token_string")]
    with pytest.raises(UserError, match=r"--token_string is required.*set token_string in the dataset config for datasets\[0\]\.subsets\[0\]"):
        check_training_flags(parse_training_args(argv), sdxl=False)
    config.write_text(config.read_text().replace("[[datasets]]", f"token_string = '{TOKEN}'\n[[datasets]]"))
    check_training_flags(parse_training_args(argv), sdxl=False)


@pytest.mark.slow
def test_validation_loss_chart_samples_and_debug_dataset_know_each_concept(tiny_model_dir, tmp_path, capsys):
    config = make_two_concept_dataset(tmp_path / "data")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"a {SECOND} and a {TOKEN} --w 64 --h 64 --s 2 --d 5\n")
    model = tiny_model_dir("sd1")
    result = run(train_argv(model, config, tmp_path / "out", "--validation_split=0.25", "--validate_every_n_steps=2",
                            f"--sample_prompts={prompts}", "--sample_every_n_steps=2", steps=2))
    step, by_concept = result.concept_validation_losses[0]  # at step 2, and again at the end of the epoch
    assert step == 2 and set(by_concept) == {TOKEN, SECOND} and all(v > 0 for v in by_concept.values())
    out = tmp_path / "out"
    assert (out / "ti_loss.png").is_file() and (out / f"{SECOND}_loss.png").is_file()  # each concept's chart beside its file
    assert not (out / f"ti-{TOKEN}_loss.png").exists()
    assert any(p.suffix == ".png" for p in (out / "sample").iterdir())
    run(train_argv(model, config, tmp_path / "debug", "--debug_dataset", "--debug_dataset_count=50"))
    printed = capsys.readouterr().out
    assert f"trains the concept '{SECOND}'" in printed and f"trains the concept '{TOKEN}'" in printed


@pytest.mark.slow
def test_sdxl_trains_clip_l_and_clip_g_per_concept_with_latents_cached_to_disk(tiny_model_dir, tmp_path):
    config = make_two_concept_dataset(tmp_path / "data")
    argv = train_argv(tiny_model_dir("sdxl"), config, tmp_path / "out", "--cache_latents_to_disk", steps=2)
    result = train(parse_training_args(argv, sdxl=True), sdxl=True)
    first = load_file(str(tmp_path / "out" / "ti.safetensors"))
    second = load_file(str(tmp_path / "out" / f"{SECOND}.safetensors"))
    assert {k: tuple(v.shape) for k, v in first.items()} == {"clip_l": (2, 32), "clip_g": (2, 64)}
    assert {k: tuple(v.shape) for k, v in second.items()} == {"clip_l": (1, 32), "clip_g": (1, 64)}
    assert torch.equal(second["clip_g"], result.tokens.concepts[1].vectors_by_slot()["clip_g"])
    assert list((tmp_path / "data" / "second").glob("*.npz")) or list((tmp_path / "data" / "second").glob("*.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("passes", [(), ("--separate_concept_passes",)], ids=["shared-pass", "separate-passes"])
def test_two_processes_train_every_concept_as_one_process_with_two_accumulation_steps(tiny_model_dir, tmp_path, passes):
    # separate passes: several forward/backward pairs per step under DDP, each reducing the gradients accumulated so far
    import os
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    config = make_two_concept_dataset(tmp_path / "data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # torchrun is what `accelerate launch --multi_gpu` runs; on CPU accelerate then uses gloo (MULTI_CPU)
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", str(repo / "train_textual_inversion.py"),
           *train_argv(tiny_model_dir("sd1"), config, tmp_path / "two", "--save_every_n_steps=2", *passes, steps=2)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x2 process(es)" in done.stdout and "concepts:         2" in done.stdout
    # one process accumulating two lockstep items sees the same global batch, with the same per-sample noise
    one = run(train_argv(tiny_model_dir("sd1"), config, tmp_path / "one", "--gradient_accumulation_steps=2", steps=2))
    for name, token in (("ti", TOKEN), (SECOND, SECOND)):
        vectors = load_file(str(tmp_path / "two" / f"{name}.safetensors"))["emb_params"]
        assert (tmp_path / "two" / f"{name}-step00000002.safetensors").is_file()
        torch.testing.assert_close(vectors, one.tokens.vectors_by_slot()[f"emb_params/{token}"], rtol=1e-4, atol=1e-5)


def test_a_concept_with_more_vectors_than_a_caption_holds_is_refused_before_loading(tmp_path):
    from library.training.flag_rules import check_training_flags

    config = make_two_concept_dataset(tmp_path, second_keys="")
    config.write_text(config.read_text().replace("num_vectors_per_token = 1", "num_vectors_per_token = 80"))
    with pytest.raises(UserError, match=rf"num_vectors_per_token 80 of the concept '{SECOND}' \(datasets\[0\]\.subsets\[1\]\) cannot fit the 75-token window"):
        check_training_flags(parse_training_args(train_argv(tmp_path, config, tmp_path)), sdxl=False)


def test_each_concept_file_name_is_locked_against_a_second_run(tiny_model_dir, tmp_path, two_concepts):
    from library.training import preflight

    # another process holds the second concept's name in the same folder
    import fcntl
    import os

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / f".{SECOND}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"4242", 0)
    try:
        import subprocess
        import sys

        repo = Path(__file__).resolve().parents[1]
        code = ("import sys; from library.cli import run_main; from train_textual_inversion import main; "
                "sys.exit(run_main(main, sys.argv[1:]))")
        done = subprocess.run([sys.executable, "-c", code, *train_argv(tiny_model_dir("sd1"), two_concepts, out)],
                              cwd=repo, capture_output=True, text=True, timeout=120)
    finally:
        os.close(fd)
        preflight.release_output_locks()
    assert done.returncode != 0 and f"another run (pid 4242) is writing {SECOND}" in done.stderr + done.stdout


def test_the_memory_estimate_counts_every_concept_batch_of_a_shared_pass(tiny_model_dir, tmp_path, two_concepts):
    from library.dataset.group import build_dataset_group
    from library.dataset.lockstep import ConceptLockstep
    from library.training import data_setup
    from library.training.concepts import resolve_concepts
    from library.training.memory_estimate import largest_batch, largest_pass

    args = parse_training_args(train_argv(tiny_model_dir("sd1"), two_concepts, tmp_path))
    params = data_setup.dataset_params(args)
    concepts = resolve_concepts(params, args)
    group = build_dataset_group(params, concept_tokens=[c.token_string for c in concepts])
    lockstep = ConceptLockstep(group, len(concepts))
    assert largest_batch(group) == ((8, 8), 2)  # one batch: what --separate_concept_passes holds at a time
    assert largest_pass(lockstep.views) == ((8, 8), 4)  # both concepts' 64x64 batches in one pass
