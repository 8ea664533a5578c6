"""Tells the training datasets which epoch starts (per-epoch frame offsets)."""
from __future__ import annotations

from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook


def datasets_with_epochs(dataset) -> list:
    """`dataset` and the datasets it wraps (RepeatDataset, ConcatDataset, ...) that have
    `set_epoch`."""
    if dataset is None:
        return []
    found = [dataset] if callable(getattr(dataset, 'set_epoch', None)) else []
    inner = [getattr(dataset, 'dataset', None)] + list(getattr(dataset, 'datasets', []) or [])
    for sub in inner:
        if sub is not None and sub is not dataset:
            found += datasets_with_epochs(sub)
    return found


@HOOKS.register_module()
class FrameEpochHook(Hook):
    """Before each training epoch, `set_epoch(epoch)` on the train datasets that have it.

    `PairedFrameDataset` then starts its `frame_stride` at a new per-scene offset, so every
    exported frame is used over the epochs (its epoch sits in shared memory: persistent
    dataloader workers see it). Part of `ConceptDistillHook`.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        """Select this epoch's frames."""
        loop = getattr(runner, 'train_loop', None)
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        for ds in datasets_with_epochs(dataset):
            ds.set_epoch(runner.epoch)
