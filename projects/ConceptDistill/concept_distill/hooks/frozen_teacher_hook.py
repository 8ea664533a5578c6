"""Keeps the CLIP teacher frozen and checks that a teacher-feature cache is its own."""
from __future__ import annotations

from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook

from concept_distill.hooks.distiller_of import distiller_of


def _cache_transforms(dataset) -> list:
    """(dataset, transform) for each pipeline transform holding a teacher-feature cache,
    through dataset wrappers."""
    if dataset is None:
        return []
    inner = [getattr(dataset, 'dataset', None)] + list(getattr(dataset, 'datasets', []) or [])
    found = [(dataset, t) for t in getattr(getattr(dataset, 'pipeline', None), 'transforms', [])
             if hasattr(getattr(t, 'cache', None), 'check_key')]
    for sub in inner:
        if sub is not None and sub is not dataset:
            found += _cache_transforms(sub)
    return found


@HOOKS.register_module()
class FrozenTeacherHook(Hook):
    """Keeps the distiller's teacher frozen and in eval mode; checks its feature caches.

    - before training: no teacher parameter requires grad or sits in the optimizer (once the
      network exists: a teacher built on first use is not built for these checks), the
      teacher is in eval mode, and every teacher-feature cache the loops read was made by this
      teacher (and holds the token set the model reads); logs what the teacher is.
    - at every epoch start and after every iteration: puts the teacher back in eval if
      anything switched it (``runner.model.train()`` does).
    - at every checkpoint: records the teacher's key in the checkpoint's meta.
    """

    priority = 'NORMAL'

    def __init__(self, log_alignment: bool = True) -> None:
        self.log_alignment = log_alignment

    def before_train(self, runner) -> None:
        """Validate the frozen teacher, the optimizer and the teacher cache."""
        model = distiller_of(runner)
        teacher = model.teacher
        teacher.freeze()
        # A teacher built on first use (LazyCLIPTeacher) and not built yet has no parameters
        # to check, and none is built here: a run on cached features never builds one.
        built = getattr(teacher, 'built', True)
        trainable = ([n for n, p in teacher.named_parameters() if p.requires_grad] if built
                     else [])
        if trainable:
            raise RuntimeError(f'teacher parameters require grad: {trainable[:5]}')
        teacher_ids = {id(p) for p in teacher.parameters()} if built else set()
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
        key = teacher.cache_key()
        runner.logger.info(f'FrozenTeacherHook: teacher {key["model_name"]} weights '
                           f'{key["weights_digest"]}, image size {key["image_size"]}, '
                           f'{teacher.num_prefix} prefix tokens; frozen, eval mode')
        if str(key['weights_digest']).startswith('random-init'):
            runner.logger.warning('FrozenTeacherHook: the CLIP teacher is randomly initialised; '
                                  'this run demonstrates the pipeline only.')

    @staticmethod
    def _check_cache(runner, model) -> None:
        """Every teacher-feature cache the loops read must come from this model's teacher and
        from the loop's dataset (its frames and images)."""
        key = model.teacher.cache_key()
        token_names = dict(patch='patch_tokens', prefix='prefix_tokens')
        for name in ('_train_loop', '_val_loop', '_test_loop'):
            loop = getattr(runner, name, None)
            dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
            for owner, transform in _cache_transforms(dataset):
                transform.cache.check_key(dict(teacher=key))
                check_dataset = getattr(transform, 'check_dataset', None)
                if callable(check_dataset):
                    got = check_dataset(owner)
                    if got.get('frames'):
                        runner.logger.info(
                            f'FrozenTeacherHook: {transform.cache.cache_dir} matches the '
                            f"{got['frames']} frames' images ({got['mode']} check, "
                            f"{got['seconds']} s)")
                    if got.get('missing'):
                        runner.logger.warning(
                            f"FrozenTeacherHook: {got['missing']} images are missing, e.g. "
                            f"{got['first_missing']}; those frames will be skipped")
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
        distiller_of(runner).teacher.train(False)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record the teacher in the full checkpoint."""
        checkpoint.setdefault('meta', {})['teacher'] = distiller_of(runner).teacher.cache_key()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Re-freeze the teacher if anything switched it to train mode."""
        teacher = distiller_of(runner).teacher
        if teacher.training:
            runner.logger.warning('FrozenTeacherHook: the teacher was switched to train mode; '
                                  'putting it back in eval')
            teacher.train(False)
