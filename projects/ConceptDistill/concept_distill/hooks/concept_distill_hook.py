"""Distillation pre-training hook: frozen teacher, alignment logging, backbone export."""
from __future__ import annotations

import os.path as osp

from mmdet3d.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..models.distill.backbone_checkpoint import (
    backbone_meta,
    check_backbone_checkpoint,
    save_backbone_checkpoint,
)


@HOOKS.register_module()
class ConceptDistillHook(Hook):
    """Keeps the CLIP teacher frozen, logs alignment, writes downstream-ready backbones.

    - before training: checks that no teacher parameter requires grad or sits in the optimizer,
      that the teacher is in eval mode, and (when the dataset reads a teacher-feature cache)
      that the cache was made by this teacher; logs what the teacher is.
    - every iteration: puts the teacher back in eval if anything switched it; the distiller
      adds batch `align_cos` / `align_top1` (student vs teacher) to the logged values when
      `log_alignment` is on.
    - at every checkpoint the CheckpointHook writes (`iter_N.pth` / `epoch_N.pth`), writes
      `backbone_<name>.pth` next to it (keys `backbone.*`, meta: source config, teacher name
      and weights digest, iteration) and refreshes `backbone_latest.pth`.

    Priority LOWEST: it runs after the CheckpointHook (VERY_LOW) of the same iteration, so
    the checkpoint it mirrors exists.
    """

    priority = 'LOWEST'

    def __init__(self, export_backbone: bool = True, log_alignment: bool = True,
                 write_latest: bool = True, prefix: str = 'backbone.') -> None:
        self.export_backbone = export_backbone
        self.log_alignment = log_alignment
        self.write_latest = write_latest
        self.prefix = prefix
        self._exported: str | None = None
        self._pending: dict = {}

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'teacher') or not hasattr(model, 'backbone'):
            raise TypeError(f'ConceptDistillHook needs a ConceptDistiller model, got '
                            f'{type(model).__name__}')
        return model

    def before_train(self, runner) -> None:
        """Validate the frozen teacher, the optimizer and the teacher cache."""
        model = self._model(runner)
        teacher = model.teacher
        teacher.freeze()
        trainable = [n for n, p in teacher.named_parameters() if p.requires_grad]
        if trainable:
            raise RuntimeError(f'teacher parameters require grad: {trainable[:5]}')
        teacher_ids = {id(p) for p in teacher.parameters()}
        optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
        wrappers = getattr(runner.optim_wrapper, 'optim_wrappers', None)
        optimizers = ([w.optimizer for w in wrappers.values()] if wrappers
                      else [optimizer] if optimizer is not None else [])
        leaked = sum(id(p) in teacher_ids for opt in optimizers
                     for g in opt.param_groups for p in g['params'])
        if leaked:
            raise RuntimeError(f'{leaked} teacher parameters are in the optimizer; the teacher '
                               'must stay frozen')
        model.log_alignment = self.log_alignment
        self._check_cache(runner, teacher)
        key = teacher.cache_key()
        runner.logger.info(f'ConceptDistillHook: teacher {key["model_name"]} weights '
                           f'{key["weights_digest"]}, image size {key["image_size"]}, '
                           f'{teacher.num_prefix} prefix tokens; frozen, eval mode')
        if str(key['weights_digest']).startswith('random-init'):
            runner.logger.warning('ConceptDistillHook: the CLIP teacher is randomly initialised; '
                                  'this run demonstrates the pipeline only.')

    @staticmethod
    def _check_cache(runner, teacher) -> None:
        """A dataset that reads a teacher-feature cache must have been made by this teacher."""
        loop = getattr(runner, 'train_loop', None)
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        cache_key = getattr(dataset, 'teacher_cache_key', None)
        if callable(cache_key):
            cache_key = cache_key()
        if cache_key is None:
            return
        expected = teacher.cache_key()
        diff = sorted(k for k in set(expected) | set(cache_key)
                      if expected.get(k) != cache_key.get(k))
        if diff:
            details = '; '.join(f'{k}: cache {cache_key.get(k)!r} vs teacher {expected.get(k)!r}'
                                for k in diff)
            raise ValueError(f'the teacher-feature cache does not match the configured teacher '
                             f'({details}); re-run tools/extract_teacher_features.py')

    def before_train_epoch(self, runner) -> None:
        """`runner.model.train()` at each epoch start must not wake the teacher."""
        self._model(runner).teacher.train(False)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record the teacher in the full checkpoint and remember its iteration for export."""
        model = self._model(runner)
        meta = checkpoint.setdefault('meta', {})
        meta['teacher'] = model.teacher.cache_key()
        self._pending = dict(iteration=meta.get('iter', runner.iter),
                             epoch=meta.get('epoch', runner.epoch))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Re-freeze the teacher; mirror a checkpoint written in this iteration."""
        teacher = self._model(runner).teacher
        if teacher.training:
            runner.logger.warning('ConceptDistillHook: the teacher was switched to train mode; '
                                  'putting it back in eval')
            teacher.train(False)
        self._maybe_export(runner)

    def after_train_epoch(self, runner) -> None:
        """Mirror an epoch checkpoint."""
        self._maybe_export(runner)

    def _maybe_export(self, runner) -> None:
        if not self.export_backbone:
            return
        last = runner.message_hub.get_info('last_ckpt')
        if not last or last == self._exported:
            return
        self._exported = last
        if is_main_process():
            self.export(runner, last)

    def export(self, runner, checkpoint_path: str) -> str:
        """Write the backbone of the current model next to `checkpoint_path`."""
        model = self._model(runner)
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
            runner.logger.warning(f'ConceptDistillHook: replacing {out}, which mirrored an '
                                  f'earlier {name}')
        save_backbone_checkpoint(state, meta, out, self.prefix, overwrite=True)
        # Validate what was written against this run's backbone: a broken export fails here,
        # not at fine-tuning time.
        check_backbone_checkpoint(out, model.backbone, self.prefix)
        if self.write_latest:
            save_backbone_checkpoint(state, meta, osp.join(folder, 'backbone_latest.pth'),
                                     self.prefix, overwrite=True)
        runner.logger.info(f'ConceptDistillHook: wrote backbone checkpoint {out} '
                           f'({len(state)} tensors)')
        return out
