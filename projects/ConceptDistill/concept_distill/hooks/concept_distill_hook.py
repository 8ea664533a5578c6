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


def _cache_transforms(dataset) -> list:
    """Pipeline transforms holding a teacher-feature cache, through dataset wrappers."""
    if dataset is None:
        return []
    inner = [getattr(dataset, 'dataset', None)] + list(getattr(dataset, 'datasets', []) or [])
    found = [t for t in getattr(getattr(dataset, 'pipeline', None), 'transforms', [])
             if hasattr(getattr(t, 'cache', None), 'check_key')]
    for sub in inner:
        if sub is not None and sub is not dataset:
            found += _cache_transforms(sub)
    return found


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
      and weights digest, iteration) and refreshes `backbone_latest.pth`; a `best_*.pth`
      (CheckpointHook `save_best`) gets its `backbone_best_*.pth` too.

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
        self._exported_best: str | None = None
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
        self._check_cache(runner, model)
        # A resumed run restores `last_ckpt` (the checkpoint it resumed from): that one already
        # has its mirror, and the weights will have moved by the time the next iteration ends.
        self._exported = runner.message_hub.get_info('last_ckpt')
        self._exported_best = runner.message_hub.get_info('best_ckpt')
        key = teacher.cache_key()
        runner.logger.info(f'ConceptDistillHook: teacher {key["model_name"]} weights '
                           f'{key["weights_digest"]}, image size {key["image_size"]}, '
                           f'{teacher.num_prefix} prefix tokens; frozen, eval mode')
        if str(key['weights_digest']).startswith('random-init'):
            runner.logger.warning('ConceptDistillHook: the CLIP teacher is randomly initialised; '
                                  'this run demonstrates the pipeline only.')

    @staticmethod
    def _check_cache(runner, model) -> None:
        """Every teacher-feature cache the loops read must come from this model's teacher."""
        key = model.teacher.cache_key()
        token_names = dict(patch='patch_tokens', prefix='prefix_tokens')
        for name in ('_train_loop', '_val_loop', '_test_loop'):
            loop = getattr(runner, name, None)
            dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
            for transform in _cache_transforms(dataset):
                transform.cache.check_key(dict(teacher=key))
                # the cache index records its token set as {'name': 'patch', 'shape': [...]}
                cached = (transform.cache.index.get('tokens') or {}).get('name')
                if cached and getattr(transform, 'tokens', False) and \
                        token_names.get(cached) != model.cached_tokens:
                    raise ValueError(
                        f'the teacher-feature cache {transform.cache.cache_dir} holds {cached} '
                        f'tokens but the model reads cached tokens as {model.cached_tokens!r}; '
                        f'set model.cached_tokens={token_names.get(cached)!r}')

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

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        """Mirror a `best_*.pth` the CheckpointHook (`save_best`) has just written."""
        best = runner.message_hub.get_info('best_ckpt')
        if self.export_backbone and best and best != self._exported_best:
            self._exported_best = best
            if is_main_process():
                self.export(runner, best, write_latest=False)

    def _maybe_export(self, runner) -> None:
        if not self.export_backbone:
            return
        last = runner.message_hub.get_info('last_ckpt')
        if not last or last == self._exported:
            return
        self._exported = last
        if is_main_process():
            self.export(runner, last)

    def export(self, runner, checkpoint_path: str, write_latest: bool = True) -> str:
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
        if self.write_latest and write_latest:
            save_backbone_checkpoint(state, meta, osp.join(folder, 'backbone_latest.pth'),
                                     self.prefix, overwrite=True)
        runner.logger.info(f'ConceptDistillHook: wrote backbone checkpoint {out} '
                           f'({len(state)} tensors)')
        return out
