"""Writes a downstream-ready backbone checkpoint next to every checkpoint of a run."""
from __future__ import annotations

import os.path as osp

from mmdet3d.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from concept_distill.checkpoint.backbone_checkpoint import (
    backbone_meta,
    check_backbone_checkpoint,
    save_backbone_checkpoint,
)
from concept_distill.hooks.distiller_of import distiller_of


@HOOKS.register_module()
class BackboneExportHook(Hook):
    """Mirrors each checkpoint the CheckpointHook writes with a backbone-only checkpoint.

    For ``iter_N.pth`` / ``epoch_N.pth`` it writes ``backbone_<name>.pth`` beside it (keys
    ``backbone.*``; meta: source config, teacher name and weights digest, iteration), checks
    it against the run's backbone, and refreshes ``backbone_latest.pth``; a ``best_*.pth``
    (CheckpointHook ``save_best``) gets its ``backbone_best_*.pth`` too. The checkpoint a run
    resumed from is never re-exported.

    Priority LOWEST: it runs after the CheckpointHook (VERY_LOW) of the same iteration, so
    the checkpoint it mirrors exists.
    """

    priority = 'LOWEST'

    def __init__(self, write_latest: bool = True, prefix: str = 'backbone.') -> None:
        self.write_latest = write_latest
        self.prefix = prefix
        self._exported: str | None = None
        self._exported_best: str | None = None
        self._pending: dict = {}

    def before_train(self, runner) -> None:
        """Remember what a resumed run already mirrored."""
        distiller_of(runner)
        # A resumed run restores `last_ckpt` (the checkpoint it resumed from): that one already
        # has its mirror, and the weights will have moved by the time the next iteration ends.
        self._exported = runner.message_hub.get_info('last_ckpt')
        self._exported_best = runner.message_hub.get_info('best_ckpt')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Remember the iteration of the checkpoint being written."""
        meta = checkpoint.get('meta', {})
        self._pending = dict(iteration=meta.get('iter', runner.iter),
                             epoch=meta.get('epoch', runner.epoch))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Mirror a checkpoint written in this iteration."""
        self._maybe_export(runner)

    def after_train_epoch(self, runner) -> None:
        """Mirror an epoch checkpoint."""
        self._maybe_export(runner)

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        """Mirror a `best_*.pth` the CheckpointHook (`save_best`) has just written."""
        best = runner.message_hub.get_info('best_ckpt')
        if best and best != self._exported_best:
            self._exported_best = best
            if is_main_process():
                self.export(runner, best, write_latest=False)

    def _maybe_export(self, runner) -> None:
        last = runner.message_hub.get_info('last_ckpt')
        if not last or last == self._exported:
            return
        self._exported = last
        if is_main_process():
            self.export(runner, last)

    def export(self, runner, checkpoint_path: str, write_latest: bool = True) -> str:
        """Write the backbone of the current model next to `checkpoint_path`."""
        model = distiller_of(runner)
        folder, name = osp.split(checkpoint_path)
        out = osp.join(folder, f'backbone_{name}')
        cfg = runner.cfg
        backbone_cfg = cfg.model.get('backbone') if cfg.get('model') else None
        meta = backbone_meta(
            backbone_cfg, model.teacher.cache_key(),
            source_config=getattr(cfg, 'filename', None) or '',
            source_checkpoint=osp.abspath(checkpoint_path),
            iteration=int(self._pending.get('iteration', runner.iter + 1)),
            epoch=int(self._pending.get('epoch', runner.epoch)),
            experiment=str(runner.experiment_name))
        state = model.backbone.state_dict()
        if osp.exists(out):
            # The CheckpointHook has just replaced the full checkpoint of the same name (a
            # re-run in the same work dir), so the old mirror describes nothing any more.
            runner.logger.warning(f'BackboneExportHook: replacing {out}, which mirrored an '
                                  f'earlier {name}')
        save_backbone_checkpoint(state, meta, out, self.prefix, overwrite=True)
        # Validate what was written against this run's backbone: a broken export fails here,
        # not at fine-tuning time.
        check_backbone_checkpoint(out, model.backbone, self.prefix)
        if self.write_latest and write_latest:
            save_backbone_checkpoint(state, meta, osp.join(folder, 'backbone_latest.pth'),
                                     self.prefix, overwrite=True)
        runner.logger.info(f'BackboneExportHook: wrote backbone checkpoint {out} '
                           f'({len(state)} tensors)')
        return out
