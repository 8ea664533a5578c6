"""Collating paired samples when a test-mode dataset left some out (None items)."""
from __future__ import annotations

from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS

from concept_distill.datasets.frustum_pairing import PairedDataError


@FUNCTIONS.register_module()
def paired_collate(data_batch: list) -> dict:
    """mmengine's `pseudo_collate` of the items that exist.

    In test mode `PairedFrameDataset` returns None for an unreadable frame it cannot replace
    without putting a pair twice in the gallery; such items are left out of the batch (the
    dataset counted them). A batch with no item left is an error naming the cause.
    """
    kept = [item for item in data_batch if item is not None]
    if not kept:
        raise PairedDataError(
            f'all {len(data_batch)} frames of a validation batch are unreadable (see the '
            "'skipping frame' warnings above for the files); fix or remove them",
            None, 'empty_batch')
    return pseudo_collate(kept)
