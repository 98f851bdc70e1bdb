"""The dataset group end to end: params -> group -> DataLoader -> batch dicts; determinism; reg balance; split."""

import json

import pytest
import torch
from dataset_helpers import group_params, solid, write_image
from PIL import Image

from library.dataset.group import balance_reg_repeats, build_dataset_group, make_dataloader
from library.dataset.params import DatasetGroupParams, DatasetParams, SubsetParams
from library.dataset.templates import OBJECT_TEMPLATES
from library.errors import UserError


def bucketed(*subsets, **kw):
    kw.setdefault("enable_bucket", True)
    kw.setdefault("min_bucket_reso", 32)
    kw.setdefault("max_bucket_reso", 128)
    kw.setdefault("bucket_reso_steps", 16)
    return group_params(*subsets, **kw)


def test_batches_through_a_dataloader(image_dir):
    params = bucketed(SubsetParams(image_dir=str(image_dir), caption_extension=".txt", num_repeats=2), batch_size=2)
    group = build_dataset_group(params, seed=3)
    assert group.num_train_images == 8 and group.num_reg_images == 0
    assert len(group) == sum(-(-len(items) // 2) for items in group.parts[0].buckets.values())
    group.set_epoch(0)
    batches = list(make_dataloader(group))
    assert len(batches) == len(group)
    seen = []
    for batch in batches:
        b, _, h, w = batch["images"].shape
        assert batch["images"].dtype == torch.float32 and -1 <= batch["images"].min() and batch["images"].max() <= 1
        assert batch["latents"] is None and batch["alpha_masks"] is None
        assert len(batch["captions"]) == b == len(batch["image_paths"])
        assert batch["loss_weights"].tolist() == [1.0] * b
        assert batch["target_sizes_hw"].tolist() == [[h, w]] * b
        assert batch["original_sizes_hw"].dtype == torch.long and batch["crop_top_lefts"].shape == (b, 2)
        assert batch["flipped"].dtype == torch.bool and not batch["flipped"].any()
        assert h * w <= 64 * 64 and h % 16 == 0 and w % 16 == 0
        seen += batch["image_paths"]
    assert sorted(seen) == sorted(str(image_dir / f"img{i}.png") for i in range(4) for _ in range(2))


def test_order_is_a_pure_function_of_seed_and_epoch(image_dir):
    params = bucketed(
        SubsetParams(
            image_dir=str(image_dir), caption_extension=".txt", num_repeats=3, shuffle_caption=True, flip_aug=True
        )
    )

    def epoch_of(seed, epoch, start=0):
        group = build_dataset_group(params, seed=seed)
        group.set_epoch(epoch)
        return [
            (b["image_paths"], b["captions"], b["flipped"].tolist()) for b in make_dataloader(group, skip_batches=start)
        ]

    first = epoch_of(1, 2)
    assert first == epoch_of(1, 2)
    assert epoch_of(1, 2, start=4) == first[4:]  # resume: skip the first k batches, same data after
    assert first != epoch_of(1, 3) and first != epoch_of(2, 2)


def test_dataloader_workers_see_set_epoch(image_dir):
    params = bucketed(SubsetParams(image_dir=str(image_dir), caption_extension=".txt", num_repeats=2))
    group = build_dataset_group(params, seed=0)
    loader = make_dataloader(group, num_workers=1)
    orders = []
    for epoch in (0, 1, 0):
        group.set_epoch(epoch)
        orders.append([b["image_paths"] for b in loader])
    assert orders[0] == orders[2] and orders[0] != orders[1]


def test_captions_rewritten_once_and_last(image_dir):
    calls = []

    def rewrite(c):
        calls.append(c)
        return c.replace("sks", "sks sks1")

    params = bucketed(SubsetParams(image_dir=str(image_dir), caption_extension=".txt", caption_prefix="photo,"))
    group = build_dataset_group(params, caption_rewrite=rewrite)
    batch = group[0]
    assert all(c.startswith("photo, sks sks1, tag") for c in batch["captions"])
    assert len(calls) == len(batch["captions"])
    assert sorted(group.iter_captions()) == [f"photo, sks, tag{i}, red, blue" for i in range(4)]


def test_templates_replace_or_wrap_the_caption(image_dir):
    params = bucketed(SubsetParams(image_dir=str(image_dir), caption_extension=".txt"))
    group = build_dataset_group(params, templates=OBJECT_TEMPLATES, token_string="mytok", caption_rewrite=str.upper)
    caps = [c for i in range(len(group)) for c in group[i]["captions"]]
    assert all(c in {t.format("mytok").upper() for t in OBJECT_TEMPLATES} for c in caps)
    group = build_dataset_group(params, templates=["a photo of [name], [filewords]"], token_string="mytok")
    assert sorted(group.iter_captions()) == [f"a photo of mytok, sks, tag{i}, red, blue" for i in range(4)]


def test_reg_images_balanced_and_weighted(tmp_path, image_dir):
    reg = tmp_path / "reg"
    for i in range(3):
        write_image(reg / f"r{i}.png", (64, 64), seed=10 + i)
    params = bucketed(
        SubsetParams(image_dir=str(image_dir), caption_extension=".txt", num_repeats=2),
        SubsetParams(image_dir=str(reg), is_reg=True, class_tokens="person"),
        batch_size=1,
    )
    group = build_dataset_group(params, prior_loss_weight=0.25)
    assert group.num_train_images == 8 and group.num_reg_images == 3
    assert len(group) == 16  # 8 train + reg repeated up to 8
    weights = {}
    for i in range(len(group)):
        batch = group[i]
        weights.setdefault(batch["captions"][0], set()).add(float(batch["loss_weights"][0]))
    assert weights["person"] == {0.25}
    assert all(w == {1.0} for c, w in weights.items() if c != "person")
    assert any("8 used to balance 8 train images" in line for line in group.summary_lines())


def test_balance_reg_repeats_matches_sd_scripts():
    assert balance_reg_repeats(8, [1, 1, 1]) == [3, 3, 2]
    assert balance_reg_repeats(2, [1, 1, 1, 1]) == [1, 1, 0, 0]  # extra reg images are not used
    assert balance_reg_repeats(5, [2, 2]) == [3, 2]
    assert balance_reg_repeats(0, [1]) == [0]


def test_alpha_mask_batches(tmp_path):
    d = tmp_path / "alpha"
    solid(d / "a.png", (64, 64), (1, 2, 3, 51), mode="RGBA")
    solid(d / "b.png", (64, 64), (1, 2, 3))
    params = group_params(SubsetParams(image_dir=str(d), class_tokens="sks", alpha_mask=True), batch_size=2)
    batch = build_dataset_group(params)[0]
    masks = {p: float(m.mean()) for p, m in zip(batch["image_paths"], batch["alpha_masks"])}
    assert batch["alpha_masks"].shape == (2, 1, 64, 64)
    assert masks[str(d / "a.png")] == pytest.approx(0.2) and masks[str(d / "b.png")] == 1.0


def test_no_buckets_resize_shorter_side_then_crop(tmp_path):
    d = tmp_path / "imgs"
    write_image(d / "wide.png", (128, 64))
    params = group_params(SubsetParams(image_dir=str(d), class_tokens="sks"), resolution=(32, 32))
    batch = build_dataset_group(params)[0]
    assert batch["images"].shape == (1, 3, 32, 32)
    assert batch["original_sizes_hw"].tolist() == [[64, 128]] and batch["crop_top_lefts"].tolist() == [[0, 16]]


def test_split_validation_honours_dataset_settings(tmp_path):
    d = tmp_path / "many"
    for i in range(10):
        write_image(d / f"{i}.png", (64, 64), seed=i)
    reg = tmp_path / "reg"
    write_image(reg / "r.png", (64, 64))
    subsets = [SubsetParams(image_dir=str(d), class_tokens="sks"), SubsetParams(image_dir=str(reg), is_reg=True)]
    group = build_dataset_group(group_params(*subsets))
    train, val = group.split_validation(0.3, seed=1)
    train_paths = {r.path for r in train.records if not r.is_reg}
    val_paths = {r.path for r in val.records}
    assert len(val_paths) == 3 and len(train_paths) == 7 and not train_paths & val_paths
    assert any(r.is_reg for r in train.records) and not any(r.is_reg for r in val.records)
    assert {r.path for r in group.split_validation(0.3, seed=1)[1].records} == val_paths
    own = build_dataset_group(
        DatasetGroupParams(
            datasets=[DatasetParams(subsets=subsets, resolution=(64, 64), validation_split=0.5, validation_seed=7)]
        )
    )
    assert len(own.split_validation(0.1, seed=1)[1].records) == 5
    assert len(group.split_validation(0.0, seed=1)[1]) == 0


def test_fine_tuning_metadata_with_windows_keys_and_stems(tmp_path, monkeypatch):
    d = tmp_path / "ft"
    write_image(d / "one.png", (64, 64))
    write_image(d / "two.jpg", (64, 64))
    write_image(d / "three.webp", (64, 64))
    meta = {
        "ft\\one.png": {"caption": "first image", "tags": "tag1, tag2"},
        "two": {"tags": "only, tags"},
        str(d / "three.webp"): {"caption": "third", "train_resolution": [64, 64]},
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    params = group_params(SubsetParams(image_dir=str(d), metadata_file=str(tmp_path / "meta.json")))
    group = build_dataset_group(params)
    captions = dict(group.iter_captions(with_paths=True))
    assert captions == {
        "ft/one.png": "first image,tag1, tag2",
        str(d / "two.jpg"): "only, tags",
        str(d / "three.webp"): "third",
    }


def test_all_problems_reported_at_once(tmp_path):
    good = tmp_path / "good"
    write_image(good / "ok.png", (64, 64))
    (good / "empty.png").write_bytes(b"")
    data = write_image(tmp_path / "x.png", (64, 64)).read_bytes()
    (good / "cut.png").write_bytes(data[:40])
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    (tmp_path / "meta.json").write_text(json.dumps({"nowhere.png": {"caption": "x"}}))
    params = group_params(
        SubsetParams(image_dir=str(good), class_tokens="sks"),
        SubsetParams(image_dir=str(tmp_path / "missing")),
        SubsetParams(image_dir=str(empty_dir)),
        SubsetParams(image_dir=str(good), metadata_file=str(tmp_path / "meta.json")),
    )
    with pytest.raises(UserError) as info:
        build_dataset_group(params)
    message = str(info.value)
    for expected in (
        "missing does not exist",
        "empty_dir has no images",
        "nowhere.png",
        "empty.png",
        "cut.png",
        "--skip_bad_images",
    ):
        assert expected in message, expected
    assert message.count("\n  - ") == 4


def test_skip_bad_images_drops_them_with_a_warning(tmp_path, caplog):
    d = tmp_path / "imgs"
    write_image(d / "ok.png", (64, 64))
    (d / "zero.png").write_bytes(b"")
    group = build_dataset_group(group_params(SubsetParams(image_dir=str(d), class_tokens="sks")), skip_bad_images=True)
    assert [r.path for r in group.records] == [str(d / "ok.png")]
    assert "zero.png" in caplog.text


def test_missing_captions_fall_back_with_a_warning(tmp_path, caplog):
    d = tmp_path / "imgs"
    write_image(d / "my_cat.png", (64, 64))
    write_image(d / "dog.png", (64, 64))
    (d / "dog.txt").write_text("")
    group = build_dataset_group(group_params(SubsetParams(image_dir=str(d), caption_extension=".txt")))
    assert sorted(group.iter_captions()) == ["dog", "my_cat"]
    assert "without a .txt caption file" in caplog.text and "caption file is empty" in caplog.text


def test_settings_errors(tmp_path, image_dir):
    params = bucketed(SubsetParams(image_dir=str(image_dir)), min_bucket_reso=128, resolution=(64, 64))
    with pytest.raises(UserError, match="min_bucket_reso"):
        build_dataset_group(params)
    with pytest.raises(UserError, match="no resolution"):
        build_dataset_group(group_params(SubsetParams(image_dir=str(image_dir)), resolution=None))
    d = tmp_path / "tiny"
    write_image(d / "t.png", (8, 40))
    with pytest.raises(UserError, match="bucket_no_upscale"):
        build_dataset_group(bucketed(SubsetParams(image_dir=str(d)), bucket_no_upscale=True))


def test_summary_lines(image_dir):
    group = build_dataset_group(
        bucketed(SubsetParams(image_dir=str(image_dir), caption_extension=".txt", num_repeats=5))
    )
    text = "\n".join(group.summary_lines())
    assert "4 images x 5 repeats" in text and "buckets (images with repeats): " in text
    assert "total: 20 train images" in text


def test_exif_rotated_photo_gets_the_bucket_of_its_displayed_shape(tmp_path):
    from PIL import Image

    d = tmp_path / "phone"
    d.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    Image.new("RGB", (128, 64), (9, 9, 9)).save(d / "p.jpg", exif=exif.tobytes())
    group = build_dataset_group(bucketed(SubsetParams(image_dir=str(d), class_tokens="sks")))
    assert group.records[0].size == (64, 128)
    batch = group[0]
    assert batch["images"].shape[2] > batch["images"].shape[3]  # taller than wide
    assert batch["original_sizes_hw"].tolist() == [[128, 64]]


def test_unknown_interpolation_is_a_config_error(image_dir):
    params = group_params(SubsetParams(image_dir=str(image_dir), resize_interpolation="magic"))
    with pytest.raises(UserError, match="resize_interpolation 'magic'"):
        build_dataset_group(params)


def test_masked_loss_masks_from_conditioning_data_dir(tmp_path):
    d, masks = tmp_path / "imgs", tmp_path / "masks"
    write_image(d / "a.png", (128, 64))
    write_image(d / "b.png", (64, 64))
    left_white = Image.new("RGB", (128, 64), (0, 0, 0))
    left_white.paste((255, 255, 255), (0, 0, 64, 64))
    masks.mkdir()
    left_white.save(masks / "a.png")
    solid(masks / "b.jpg", (32, 32), (255, 0, 0))  # another size and format: resized to the image
    params = group_params(
        SubsetParams(image_dir=str(d), class_tokens="sks", conditioning_data_dir=str(masks)), resolution=(64, 64)
    )
    group = build_dataset_group(params)
    means = {}
    for i in range(len(group)):
        batch = group[i]
        means[batch["image_paths"][0]] = float(batch["alpha_masks"].mean())
    assert means[str(d / "b.png")] == pytest.approx(1.0, abs=0.01)  # JPEG red is ~254
    assert 0.4 < means[str(d / "a.png")] < 0.6  # centre crop of a half-white mask

    (masks / "b.jpg").unlink()
    with pytest.raises(UserError, match="have no mask with the same name"):
        build_dataset_group(params)


def test_dataset_prior_loss_weight_wins(tmp_path, image_dir):
    reg = tmp_path / "reg"
    write_image(reg / "r.png", (64, 64))
    params = bucketed(
        SubsetParams(image_dir=str(image_dir), caption_extension=".txt"),
        SubsetParams(image_dir=str(reg), is_reg=True, class_tokens="person"),
        batch_size=1,
        prior_loss_weight=0.5,
    )
    group = build_dataset_group(params, prior_loss_weight=1.0)
    weights = {float(group[i]["loss_weights"][0]) for i in range(len(group))}
    assert weights == {1.0, 0.5}


def test_duplicate_subset_is_ignored_with_a_warning(image_dir, caplog):
    subset = SubsetParams(image_dir=str(image_dir), caption_extension=".txt")
    group = build_dataset_group(group_params(subset, SubsetParams(image_dir=str(image_dir), num_repeats=3)))
    assert group.num_train_images == 4 and "already a subset" in caplog.text


def test_resolution_not_a_multiple_of_8_only_matters_without_buckets(image_dir):
    group = build_dataset_group(bucketed(SubsetParams(image_dir=str(image_dir)), resolution=(60, 60)))
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in group.parts[0].buckets)
    with pytest.raises(UserError, match="multiples of 8"):
        build_dataset_group(group_params(SubsetParams(image_dir=str(image_dir)), resolution=(60, 60)))
