"""Frames skipped inside dataloader workers, carried to the main process with each item.

``PairedFrameDataset`` replaces an unreadable frame by another one inside ``__getitem__``,
which runs in a dataloader worker: a counter kept there never reaches the main process (each
worker has its own copy of the dataset). So every item carries the skips that happened while
it was fetched, in its data sample's metainfo under ``SKIPPED_META_KEY``; summing them over
the batches the loop sees gives the exact total over all workers, whatever their number or
start method (``SkippedFramesHook`` logs it).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

SKIPPED_META_KEY = 'skipped_frames'


def attach_skipped(data: dict, skipped: Mapping[str, int]) -> dict:
    """Record ``skipped`` (reason -> frames) in ``data``'s data sample; returns ``data``."""
    sample = data.get('data_samples') if isinstance(data, dict) else None
    if skipped and hasattr(sample, 'set_metainfo'):
        sample.set_metainfo({SKIPPED_META_KEY: dict(skipped)})
    return data


def skipped_in_batch(data_batch: object) -> Counter:
    """The skips carried by a collated batch's data samples (reason -> frames)."""
    samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    total: Counter = Counter()
    for sample in samples if isinstance(samples, (list, tuple)) else []:
        metainfo = getattr(sample, 'metainfo', None) or {}
        total.update(metainfo.get(SKIPPED_META_KEY) or {})
    return total
