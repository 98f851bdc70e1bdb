"""Several concepts trained in lockstep (issue 17): every step gives each concept one batch of its own images.

Item `i` of epoch `e` holds, for each concept, the batch its own single-concept run would train on at that
global position (`e * len(self) + i`), cut from `DatasetGroup.concept_view`: a concept with fewer batches than
the longest one simply starts its next epoch sooner. A K-concept run thus trains each concept exactly as K
separate runs with the same flags and seed would, while sharing the model, the latent cache and each step's
forward pass (same-resolution batches run through the model together).
"""

from __future__ import annotations

import multiprocessing

from torch.utils.data import Dataset

from library.dataset.group import DatasetGroup


class ConceptLockstep(Dataset):
    """A dataset whose item is {"concept_batches": [one batch per concept, each with its "concept" index]}."""

    def __init__(self, group: DatasetGroup, num_concepts: int):
        self.group = group
        self.views = [group.concept_view(c) for c in range(num_concepts)]
        self._epoch = multiprocessing.RawValue("q", 0)  # shared with DataLoader workers, like the group's own

    def __len__(self) -> int:
        """Batches per epoch: the longest concept's epoch."""
        return max(len(v) for v in self.views)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def set_step(self, step: int) -> None:
        for view in self.views:
            view.set_step(step)

    def set_max_train_steps(self, max_train_steps: int) -> None:
        for view in self.views:
            view.set_max_train_steps(max_train_steps)

    def position(self, concept: int, epoch: int, index: int) -> tuple[int, int]:
        """(epoch, batch index) of `concept`'s own sequence at item `index` of lockstep epoch `epoch`."""
        return divmod(epoch * len(self) + index, len(self.views[concept]))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        batches = []
        for concept, view in enumerate(self.views):
            batch = view.batch_at(*self.position(concept, self._epoch.value, index))
            batch["concept"] = concept
            batches.append(batch)
        return {"concept_batches": batches}
