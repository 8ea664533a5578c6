"""``SkippedFramesHook``: frames skipped in the dataloader workers, totalled in the main log."""
from __future__ import annotations

from collections import Counter

from mmdet3d.registry import HOOKS
from mmengine.dist import all_gather_object, get_world_size
from mmengine.hooks import Hook

from concept_distill.datasets.skipped_frames import skipped_in_batch


def _init_counts(dataset) -> Counter:
    """Frames a dataset dropped while reading its infos (e.g. non-finite poses), through
    dataset wrappers; read before any item is fetched, so no worker count is in it."""
    if dataset is None:
        return Counter()
    total = Counter(getattr(dataset, 'skip_counts', None) or {})
    inner = [getattr(dataset, 'dataset', None)] + list(getattr(dataset, 'datasets', []) or [])
    for sub in inner:
        if sub is not None and sub is not dataset:
            total += _init_counts(sub)
    return total


def _summed_over_ranks(counts: Counter) -> Counter:
    """The counts of every process of a distributed run (each rank sees its own batches)."""
    if get_world_size() == 1:
        return Counter(counts)
    total: Counter = Counter()
    for part in all_gather_object(dict(counts)):
        total.update(part)
    return total


def _text(counts: Counter) -> str:
    return ', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'


@HOOKS.register_module()
class SkippedFramesHook(Hook):
    """Logs how many frames were skipped (and why), summed over all dataloader workers.

    A ``PairedFrameDataset`` replaces an unreadable frame (missing or corrupt file, too few
    points in its frustum, an invalid teacher-cache row) by another one inside a worker, and
    the item it returns carries those skips (``datasets/skipped_frames.py``). This hook adds
    them up from the batches the loops see: every ``interval`` training iterations when
    something was skipped, at each epoch's end (over all processes of a distributed run) and
    at the end of training; the totals are also in the message hub
    (``runner.message_hub.get_info('skipped_frames/train')``).
    """

    priority = 'LOW'

    def __init__(self, interval: int = 50) -> None:
        self.interval = max(int(interval), 1)
        self._counts = {'train': Counter(), 'val': Counter()}
        self._epoch = Counter()
        self._since_report = Counter()

    def before_train(self, runner) -> None:
        """Log what the training set dropped while reading its infos (main process)."""
        dropped = _init_counts(getattr(runner.train_dataloader, 'dataset', None))
        if dropped:
            runner.logger.warning(f'SkippedFramesHook: frames dropped when the training infos '
                                  f'were read: {_text(dropped)}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Add the batch's skips; log them every ``interval`` iterations when there are any."""
        skipped = skipped_in_batch(data_batch)
        self._counts['train'].update(skipped)
        self._epoch.update(skipped)
        self._since_report.update(skipped)
        if self._since_report and self.every_n_train_iters(runner, self.interval):
            runner.logger.warning(
                f'SkippedFramesHook: frames skipped in the last {self.interval} iterations '
                f'(all dataloader workers of this process): {_text(self._since_report)}; '
                f'this run so far: {_text(self._counts["train"])}')
            self._since_report = Counter()

    def after_train_epoch(self, runner) -> None:
        """The epoch's skips over all workers and processes."""
        epoch = _summed_over_ranks(self._epoch)
        self._epoch = Counter()
        runner.message_hub.update_info('skipped_frames/train',
                                       dict(_summed_over_ranks(self._counts['train'])))
        log = runner.logger.warning if epoch else runner.logger.info
        log(f'SkippedFramesHook: frames skipped this epoch (all dataloader workers'
            f'{" and processes" if get_world_size() > 1 else ""}): {_text(epoch)}')

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Add the validation batch's skips."""
        self._counts['val'].update(skipped_in_batch(data_batch))

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        """The validation pass's skips over all workers and processes."""
        val = _summed_over_ranks(self._counts['val'])
        self._counts['val'] = Counter()
        runner.message_hub.update_info('skipped_frames/val', dict(val))
        if val:
            runner.logger.warning(f'SkippedFramesHook: frames skipped in validation (all '
                                  f'dataloader workers): {_text(val)}')

    def after_train(self, runner) -> None:
        """The whole run's training skips (this process's workers)."""
        runner.logger.info(f'SkippedFramesHook: frames skipped during training (all dataloader '
                           f'workers of this process): {_text(self._counts["train"])}')
