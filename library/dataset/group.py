"""The training dataset: one item is one whole batch from one bucket, as in sd-scripts.

`build_dataset_group(params)` scans every subset, reports all problems at once, buckets the images, balances
regularization images and returns a `DatasetGroup` (a torch Dataset). Use it with `make_dataloader`
(batch_size=1 and a collate that unwraps the ready-made batch).

Determinism: the batch order of an epoch is a pure function of (seed, epoch), and every random choice for one
sample (caption shuffle, wildcards, templates, crop, flip, colour) comes from a `random.Random` seeded by
(seed, epoch, batch index, slot). A resumed run that skips the first k batches of an epoch sees the same data.
"""

from __future__ import annotations

import math
import multiprocessing
import random
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from library.dataset.buckets import BucketManager, Size
from library.dataset.captions import CaptionOptions, process_caption
from library.dataset.images import ImageTransform, load_image, load_mask, prepare_image, size_conditioning_crop, to_tensor
from library.dataset.params import DatasetGroupParams, DatasetParams
from library.dataset.scan import ImageRecord, scan_subset
from library.dataset.templates import apply_templates, filewords_from_file_name
from library.dataset.validation import Report, check_dataset_params, check_image_sizes

# token warmup is over at any real step below this; used to show full captions outside training
_AFTER_WARMUP = 1 << 62


def balance_reg_repeats(num_train_images: int, reg_repeats: list[int]) -> list[int]:
    """Repeats per regularization image so that reg images (with repeats) match the train images (with repeats).

    sd-scripts' rule: walk the reg images in order, each with its subset's num_repeats, until the count reaches
    the train count (later images get 0: unused); if one pass is not enough, keep walking and add one repeat per
    image until it does.
    """
    repeats = [0] * len(reg_repeats)
    n, first_pass = 0, True
    if num_train_images <= 0 or not reg_repeats:
        return repeats
    while n < num_train_images:
        for i, subset_repeats in enumerate(reg_repeats):
            step = subset_repeats if first_pass else 1
            repeats[i] += step
            n += step
            if n >= num_train_images:
                break
        first_pass = False
    return repeats


class DatasetPart:
    """One `[[datasets]]` table: its subsets, images, buckets and batch size."""

    def __init__(self, index: int, params: DatasetParams, records: list[ImageRecord]):
        self.index = index
        self.params = params
        self.subsets = params.subsets
        self.records = records
        self.batch_size = params.batch_size
        self.caption_opts = [CaptionOptions.from_subset(s) for s in self.subsets]
        self.transforms = [
            ImageTransform(
                random_crop=s.random_crop,
                flip_aug=s.flip_aug,
                color_aug=s.color_aug,
                alpha_mask=s.alpha_mask,
                interpolation=s.resize_interpolation or params.resize_interpolation,
                # sd-scripts uses face positions only without buckets
                face_crop_aug_range=None if params.enable_bucket else s.face_crop_aug_range,
            )
            for s in self.subsets
        ]
        self.manager = BucketManager(
            params.resolution,
            enable_bucket=params.enable_bucket,
            min_size=params.min_bucket_reso,
            max_size=params.max_bucket_reso,
            steps=params.bucket_reso_steps,
            no_upscale=params.bucket_no_upscale,
        )
        self.ar_errors = []
        for record in records:
            choice = self.manager.select_bucket(*record.size)
            record.bucket, record.resized = choice.bucket, choice.resized
            self.ar_errors.append(abs(choice.ar_error))

        repeats = [0] * len(records)
        train = [i for i, r in enumerate(records) if not r.is_reg]
        reg = [i for i, r in enumerate(records) if r.is_reg]
        for i in train:
            repeats[i] = self.subsets[records[i].subset_index].num_repeats
        self.num_train_images = sum(repeats[i] for i in train)
        self.num_reg_images = sum(self.subsets[records[i].subset_index].num_repeats for i in reg)
        for i, n in zip(
            reg,
            balance_reg_repeats(
                self.num_train_images, [self.subsets[records[i].subset_index].num_repeats for i in reg]
            ),
        ):
            repeats[i] = n
        self.repeats = repeats

        buckets: dict[Size, list[int]] = {}
        for i, record in enumerate(records):
            buckets.setdefault(record.bucket, []).extend([i] * repeats[i])
        self.buckets = {b: items for b, items in sorted(buckets.items()) if items}
        self.num_batches = sum(math.ceil(len(items) / self.batch_size) for items in self.batch_pools())

    def concept_of(self, record_index: int) -> int:
        """The concept (index into the run's concepts) that image `record_index` trains."""
        return getattr(self.subsets[self.records[record_index].subset_index], "concept", 0)

    def batch_pools(self) -> list[list[int]]:
        """The pools batches are cut from: each bucket, split by concept when several concepts share it (issue 17),
        so that a batch holds one concept's images. With one concept these are the buckets, as before."""
        pools = []
        for items in self.buckets.values():
            by_concept: dict[int, list[int]] = {}
            for i in items:
                by_concept.setdefault(self.concept_of(i), []).append(i)
            pools += [items] if len(by_concept) <= 1 else [by_concept[c] for c in sorted(by_concept)]
        return pools

    def plan_batches(self, rng: random.Random) -> list[tuple[int, list[int]]]:
        """This epoch's batches: (part index, record indices), each batch from one bucket and one concept."""
        batches = []
        for items in self.batch_pools():
            items = list(items)
            rng.shuffle(items)
            for start in range(0, len(items), self.batch_size):
                batches.append((self.index, items[start : start + self.batch_size]))
        return batches


class DatasetGroup(Dataset):
    """All datasets of a config; item `i` is batch `i` of the current epoch, as a dict (see `__getitem__`)."""

    def __init__(
        self,
        parts: list[DatasetPart],
        *,
        source: str = "command line",
        seed: int = 0,
        caption_rewrite: Optional[Callable[[str], str]] = None,
        templates: Optional[list[str]] = None,
        token_string: Optional[str] = None,
        prior_loss_weight: float = 1.0,
        concept_tokens: Optional[list[str]] = None,
    ):
        if templates and not token_string:
            raise ValueError("templates need the token string they fill in")
        self.parts = parts
        self.source = source
        self.seed = seed
        self.caption_rewrite = caption_rewrite
        self.templates = list(templates) if templates else None
        self.token_string = token_string
        # several concepts (issue 17): the token string of each concept index; templates and tag dropout use the
        # token string of the subset's own concept
        self.concept_tokens = list(concept_tokens) if concept_tokens else None
        if token_string:  # tag dropout never drops the trained token
            for part in parts:
                part.caption_opts = [replace(o, protected_token=self._token_of(s)) for o, s in zip(part.caption_opts, part.subsets)]
        self.prior_loss_weight = prior_loss_weight
        # shared with DataLoader workers (also persistent ones) so set_epoch/set_step reach them
        self._epoch = multiprocessing.RawValue("q", 0)
        self._step = multiprocessing.RawValue("q", 0)
        self._max_train_steps = multiprocessing.RawValue("q", 0)
        self._plan: Optional[tuple[int, list[tuple[int, list[int]]]]] = None

    # ---- state set by the training loop

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (0-based) whose batch order and randomness `__getitem__` serves."""
        self._epoch.value = epoch

    def set_step(self, step: int) -> None:
        """The current optimizer step (token warmup)."""
        self._step.value = step

    def set_max_train_steps(self, max_train_steps: int) -> None:
        """Total steps, for a fractional token_warmup_step (< 1 means a fraction of the run)."""
        self._max_train_steps.value = max_train_steps

    @property
    def epoch(self) -> int:
        return self._epoch.value

    # ---- sizes

    def __len__(self) -> int:
        return sum(p.num_batches for p in self.parts)

    @property
    def num_train_images(self) -> int:
        """Train images counted with their repeats (as sd-scripts)."""
        return sum(p.num_train_images for p in self.parts)

    @property
    def num_reg_images(self) -> int:
        """Regularization images counted with their subsets' repeats, before balancing (as sd-scripts)."""
        return sum(p.num_reg_images for p in self.parts)

    @property
    def records(self) -> list[ImageRecord]:
        """Every image once."""
        return [r for p in self.parts for r in p.records]

    @property
    def has_latents(self) -> bool:
        records = self.records
        return bool(records) and all(r.latents is not None or r.latent_file is not None for r in records)

    # ---- batches

    def batch_plan(self, epoch: int) -> list[tuple[int, list[int]]]:
        """The batches of `epoch` in order: a pure function of (seed, epoch)."""
        if self._plan is None or self._plan[0] != epoch:
            rng = random.Random(f"order:{self.seed}:{epoch}")
            batches = [b for part in self.parts for b in part.plan_batches(rng)]
            rng.shuffle(batches)
            self._plan = (epoch, batches)
        return self._plan[1]

    def __getitem__(self, index: int) -> dict:
        """Batch `index` of the current epoch:

        images (B,3,H,W) in [-1,1] or None when latents are cached; latents (B,4,H/8,W/8) or None;
        captions list[str] (processed, rewritten); loss_weights (B,); alpha_masks (B,1,H,W) or None;
        original_sizes_hw, crop_top_lefts, target_sizes_hw (B,2) long; flipped (B,) bool; image_paths list[str].
        """
        return self.batch_at(self.epoch, index)

    def batch_at(self, epoch: int, index: int) -> dict:
        """Batch `index` of `epoch` (what `__getitem__` serves once `set_epoch(epoch)` was called)."""
        plan = self.batch_plan(epoch)
        if not 0 <= index < len(plan):
            raise IndexError(index)
        part_index, record_indices = plan[index]
        part = self.parts[part_index]
        samples = [
            self._sample(part, i, random.Random(f"item:{self.seed}:{epoch}:{index}:{slot}"), epoch)
            for slot, i in enumerate(record_indices)
        ]
        batch = _stack(samples)
        if self.concept_tokens:  # several concepts: the one this batch trains (per-concept loss and validation)
            batch["concept"] = part.concept_of(record_indices[0])
        return batch

    def _token_of(self, subset) -> Optional[str]:
        """The token string a subset's captions train: its concept's, or the run's single token string."""
        concept = getattr(subset, "concept", 0)
        if self.concept_tokens and 0 <= concept < len(self.concept_tokens):
            return self.concept_tokens[concept]
        return self.token_string

    def _caption(
        self, part: DatasetPart, record: ImageRecord, rng: random.Random, step: int, epoch: int, dropout: bool = True
    ) -> str:
        opts = part.caption_opts[record.subset_index]
        raw = record.caption
        if self.templates and not record.has_caption and raw == Path(record.path).stem:
            raw = filewords_from_file_name(record.path)  # A1111's [filewords] without a caption file
        if not dropout:
            opts = replace(
                opts, caption_dropout_rate=0.0, caption_dropout_every_n_epochs=0, caption_tag_dropout_rate=0.0
            )
        caption = process_caption(
            raw,
            opts,
            rng,
            step=step,
            max_train_steps=self._max_train_steps.value,
            epoch=epoch + 1,  # set_epoch is 0-based; sd-scripts counts epochs from 1 for caption dropout
        )
        if self.templates:
            caption = apply_templates(self.templates, self._token_of(part.subsets[record.subset_index]), caption, rng)
        return caption

    def _reg_weight(self, part: DatasetPart) -> float:
        # the config layer may set a dataset's own prior_loss_weight; otherwise the builder's argument
        own = getattr(part.params, "prior_loss_weight", 1.0)
        return own if own != 1.0 else self.prior_loss_weight

    def _sample(self, part: DatasetPart, record_index: int, rng: random.Random, epoch: int) -> dict:
        record = part.records[record_index]
        transform = part.transforms[record.subset_index]
        caption = self._caption(part, record, rng, self._step.value, epoch)
        if self.caption_rewrite is not None:
            caption = self.caption_rewrite(caption)
        sample = {
            "caption": caption,
            "loss_weight": self._reg_weight(part) if record.is_reg else 1.0,
            "path": record.path,
            "bucket": record.bucket,
            "wants_alpha": transform.alpha_mask or record.mask_path is not None,
        }
        if record.latents is not None or record.latent_file is not None:
            from library.dataset.latent_cache import latents_for_sample

            flip = transform.flip_aug and rng.random() < 0.5
            latents, alpha, original, crop = latents_for_sample(record, flip, rng)
            crop = self._conditioning_crop(part, crop, original, record.bucket, flip)
            sample.update(image=None, latents=latents, alpha=alpha, original_size=original, crop=crop, flipped=flip)
            return sample
        loaded = load_image(record.path)
        mask = load_mask(record.mask_path, loaded.size) if record.mask_path else None
        prepared = prepare_image(loaded, record.bucket, record.resized, transform, rng, face=record.face, mask=mask)
        sample.update(
            image=to_tensor(prepared.rgb),
            latents=None,
            alpha=None if prepared.alpha is None else torch.from_numpy(prepared.alpha),
            original_size=prepared.original_size,
            crop=self._conditioning_crop(part, prepared.crop_left_top, prepared.original_size, record.bucket, prepared.flipped),
            flipped=prepared.flipped,
        )
        return sample

    @staticmethod
    def _conditioning_crop(part, actual, original, bucket, flipped: bool):
        """SDXL's crop conditioning (left, top): with buckets sd-scripts' value, not the pixels' crop `actual`
        (see size_conditioning_crop). Without buckets the actual crop: sd-scripts does not resize such images
        (it uses them at their size, where both are (0, 0), or random-crops them and passes (0, 0))."""
        if not part.params.enable_bucket:
            return actual
        return size_conditioning_crop(original, bucket, flipped)

    # ---- for the trainer

    def iter_captions(self, *, include_reg: bool = False, with_paths: bool = False, concept: Optional[int] = None) -> Iterator:
        """Each image's processed caption once (templates applied; no token rewrite, warmup or dropout).

        Regularization images are left out unless `include_reg`; `with_paths` yields (path, caption); `concept`
        keeps only the images that train that concept.
        """
        for part in self.parts:
            for record in part.records:
                if record.is_reg and not include_reg:
                    continue
                if concept is not None and getattr(part.subsets[record.subset_index], "concept", 0) != concept:
                    continue
                rng = random.Random(f"captions:{self.seed}:{record.path}")
                caption = self._caption(part, record, rng, _AFTER_WARMUP, 0, dropout=False)
                yield (record.path, caption) if with_paths else caption

    def latent_cache_blockers(self) -> list[str]:
        """Subsets whose augmentation changes pixels every epoch (random_crop, color_aug): latents can't be cached."""
        blockers = []
        for part in self.parts:
            for i, subset in enumerate(part.subsets):
                used = [k for k in ("random_crop", "color_aug") if getattr(subset, k)]
                if used:
                    blockers.append(f"dataset {part.index} subset {i} ({subset.image_dir}): {' and '.join(used)}")
        return blockers

    def cache_latents(self, vae, **kwargs) -> None:
        """Encode every image once with `vae` (see `library.dataset.latent_cache.cache_latents`)."""
        from library.dataset.latent_cache import cache_latents

        cache_latents(self, vae, **kwargs)

    def split_validation(self, fraction: float, seed: int) -> tuple["DatasetGroup", "DatasetGroup"]:
        """(train group, validation group); a dataset's own validation_split / validation_seed win.

        Like sd-scripts, each non-reg subset's images are shuffled with the seed and the last ceil(fraction * n)
        become validation images; regularization images stay in training.
        """
        train_parts, val_parts = [], []
        for part in self.parts:
            frac = part.params.validation_split if part.params.validation_split > 0 else fraction
            vseed = part.params.validation_seed if part.params.validation_seed is not None else seed
            order = {id(r): k for k, r in enumerate(part.records)}
            train, val = [], []
            for subset_index, subset in enumerate(part.subsets):
                records = [r for r in part.records if r.subset_index == subset_index]
                if subset.is_reg or frac <= 0:
                    train += records
                    continue
                random.Random(vseed).shuffle(records)
                n_val = min(len(records), math.ceil(frac * len(records)))
                train += records[: len(records) - n_val]
                val += records[len(records) - n_val :]
            train.sort(key=lambda r: order[id(r)])
            val.sort(key=lambda r: order[id(r)])
            train_parts.append(DatasetPart(part.index, part.params, train))
            if val:  # numbered by position: a dataset without validation images leaves no part here
                val_parts.append(DatasetPart(len(val_parts), part.params, val))
        return self._like(train_parts), self._like(val_parts)

    def _like(self, parts: list[DatasetPart]) -> "DatasetGroup":
        return DatasetGroup(
            parts,
            source=self.source,
            seed=self.seed,
            caption_rewrite=self.caption_rewrite,
            templates=self.templates,
            token_string=self.token_string,
            prior_loss_weight=self.prior_loss_weight,
            concept_tokens=self.concept_tokens,
        )

    def concept_counts(self, concept: int) -> tuple[int, int]:
        """(images, images with repeats) that train `concept`; regularization images left out."""
        images = sum(1 for p in self.parts for i, r in enumerate(p.records) if not r.is_reg and p.concept_of(i) == concept)
        repeated = sum(n for p in self.parts for i, (r, n) in enumerate(zip(p.records, p.repeats))
                       if not r.is_reg and p.concept_of(i) == concept)
        return images, repeated

    def concept_view(self, concept: int) -> "DatasetGroup":
        """The images of one concept (its regularization images included) as a group of their own.

        Its batches are the ones a single-concept run of just those subsets would train on, in the same order
        for the same seed: datasets keep their order and settings, and repeats and reg balancing are counted
        within the concept. The records are shared, so latents cached through this group serve the view too.
        """
        parts = []
        for part in self.parts:
            records = [r for i, r in enumerate(part.records) if part.concept_of(i) == concept]
            if records:
                parts.append(DatasetPart(len(parts), part.params, records))
        return self._like(parts)

    def summary_lines(self) -> list[str]:
        """Human-readable description: datasets, subsets, images, repeats, buckets with counts."""
        lines = []
        for part in self.parts:
            p = part.params
            w, h = p.resolution
            if p.enable_bucket:
                how = (
                    "bucket_no_upscale" if p.bucket_no_upscale else f"min {p.min_bucket_reso}, max {p.max_bucket_reso}"
                )
                bucketing = f"aspect-ratio buckets ({how}, steps {p.bucket_reso_steps})"
            else:
                bucketing = "no buckets"
            lines.append(f"dataset {part.index}: resolution {w}x{h}, batch size {p.batch_size}, {bucketing}")
            for i, subset in enumerate(part.subsets):
                records = [k for k, r in enumerate(part.records) if r.subset_index == i]
                kind = "reg" if subset.is_reg else ("fine-tuning" if subset.is_fine_tuning else "DreamBooth")
                where = subset.metadata_file if subset.is_fine_tuning else subset.image_dir
                line = f"  subset {i} ({kind}): {where}: {len(records)} images x {subset.num_repeats} repeats"
                if subset.is_reg:
                    used = sum(part.repeats[k] for k in records)
                    line += f", {used} used to balance {part.num_train_images} train images"
                if subset.class_tokens:
                    line += f", class tokens '{subset.class_tokens}'"
                lines.append(line)
            counts = ", ".join(f"{bw}x{bh}: {len(items)}" for (bw, bh), items in part.buckets.items())
            lines.append(f"  buckets (images with repeats): {counts or 'none'}")
            if p.enable_bucket and part.ar_errors:
                lines.append(f"  mean aspect-ratio error: {sum(part.ar_errors) / len(part.ar_errors):.4f}")
        lines.append(
            f"total: {self.num_train_images} train images and {self.num_reg_images} reg images (with repeats), "
            f"{len(self)} batches per epoch"
        )
        return lines


def _stack(samples: list[dict]) -> dict:
    """One batch dict from per-image samples of one bucket."""
    if samples[0]["latents"] is not None:
        images, latents = None, torch.stack([s["latents"] for s in samples])
    else:
        images, latents = torch.stack([s["image"] for s in samples]), None
    alpha_masks = None
    if any(s["wants_alpha"] for s in samples):
        bw, bh = samples[0]["bucket"]
        masks = [s["alpha"] if s["alpha"] is not None else torch.ones(bh, bw) for s in samples]
        alpha_masks = torch.stack(masks).unsqueeze(1).float()
    return {
        "images": images,
        "latents": latents,
        "captions": [s["caption"] for s in samples],
        "loss_weights": torch.tensor([s["loss_weight"] for s in samples], dtype=torch.float32),
        "alpha_masks": alpha_masks,
        "original_sizes_hw": torch.tensor(
            [[s["original_size"][1], s["original_size"][0]] for s in samples], dtype=torch.long
        ),
        "crop_top_lefts": torch.tensor([[s["crop"][1], s["crop"][0]] for s in samples], dtype=torch.long),
        "target_sizes_hw": torch.tensor([[s["bucket"][1], s["bucket"][0]] for s in samples], dtype=torch.long),
        "flipped": torch.tensor([s["flipped"] for s in samples], dtype=torch.bool),
        "image_paths": [s["path"] for s in samples],
    }


def collate_batch(items: list[dict]) -> dict:
    """DataLoader collate for batch_size=1: the item already is the batch."""
    return items[0]


def make_dataloader(
    group: DatasetGroup, *, num_workers: int = 0, skip_batches: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader over the current epoch's batches, optionally starting at batch `skip_batches` (resume)."""
    return DataLoader(
        group,
        batch_size=1,
        sampler=range(skip_batches, len(group)),
        collate_fn=collate_batch,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )


def build_dataset_group(
    params: DatasetGroupParams,
    *,
    caption_rewrite: Optional[Callable[[str], str]] = None,
    templates: Optional[list[str]] = None,
    token_string: Optional[str] = None,
    seed: int = 0,
    skip_bad_images: bool = False,
    prior_loss_weight: float = 1.0,
    concept_tokens: Optional[list[str]] = None,
) -> DatasetGroup:
    """Scan and validate every subset (one UserError lists all problems), bucket, balance reg images."""
    report = Report()
    if not params.datasets:
        report.error("no datasets; add a [[datasets]] table with at least one [[datasets.subsets]]")
    scanned = []
    for d, dataset in enumerate(params.datasets):
        where = f"dataset {d}"
        check_dataset_params(dataset, where, report)
        face_crop = not dataset.enable_bucket
        records, seen = [], set()
        for s, subset in enumerate(dataset.subsets):
            if subset.num_repeats < 1:
                continue
            source = subset.metadata_file or subset.image_dir
            if source in seen:  # sd-scripts: a repeated subset is ignored, the first one is used
                report.warn(f"{where}, subset {s}: {source} is already a subset of this dataset; ignored")
                continue
            seen.add(source)
            records += scan_subset(subset, s, f"{where}, subset {s}", report, face_crop=face_crop)
        scanned.append(records)
    check_image_sizes(params.datasets, scanned, report)
    if params.datasets and not any(r for records in scanned for r in records if not r.is_reg) and not report.errors:
        report.error("no training images found in any subset")
    report.raise_if_errors(params.source, skip_bad_images)
    parts = [DatasetPart(d, dataset, records) for d, (dataset, records) in enumerate(zip(params.datasets, scanned))]
    return DatasetGroup(
        parts,
        source=params.source,
        seed=seed,
        caption_rewrite=caption_rewrite,
        templates=templates,
        token_string=token_string,
        prior_loss_weight=prior_loss_weight,
        concept_tokens=concept_tokens,
    )
