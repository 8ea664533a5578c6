"""What the tools share: config loading (``mmdet3d::`` paths included), the override options
(``--cfg-options``, ``--transform-options``), process set-up, and the runner."""
from __future__ import annotations

import argparse
import importlib.util
import os.path as osp
from collections.abc import Iterator, Mapping
from typing import Any

from mmdet3d.registry import RUNNERS
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_config(path: str) -> Config:
    """``Config.fromfile``, also for a package's config written ``mmdet3d::votenet/x.py``.

    mmengine resolves ``package::`` only in ``_base_`` and through ``mmengine.hub.get_config``
    (which reads the package's metafile, then ``.mim/configs``); ``get_config`` would
    pip-install a missing package, so an absent one is an error here instead.
    """
    if '::' not in path:
        return Config.fromfile(path)
    from mmengine.hub import get_config

    package = path.partition('::')[0]
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(f'{path}: package {package!r} is not installed')
    return get_config(path)


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options`` (mmdet3d's) and ``--transform-options`` (pipeline transforms by type)."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy format')
    parser.add_argument(
        '--transform-options', nargs='+', action=DictAction, metavar='TYPE.KEY=VALUE',
        help='set KEY of every pipeline transform of type TYPE in the train/val/test '
        'dataloaders (through dataset wrappers), e.g. LoadTeacherFeatures.cache_dir=DIR; '
        'an error if no transform has that type')


def _datasets(dataset: Any) -> Iterator[Mapping]:
    """A dataset config and every dataset it wraps (``dataset`` / ``datasets`` keys)."""
    if not isinstance(dataset, Mapping):
        return
    yield dataset
    yield from _datasets(dataset.get('dataset'))
    for inner in dataset.get('datasets') or ():
        yield from _datasets(inner)


def _transforms(pipeline: Any) -> Iterator[dict]:
    """Every transform of a pipeline, those nested in ``transforms`` (e.g. test-time aug) too."""
    for transform in pipeline or ():
        if isinstance(transform, Mapping):
            yield transform
            yield from _transforms(transform.get('transforms'))


def _type_name(transform: Mapping) -> str:
    """A transform's type as written in configs (a class is named by its ``__name__``)."""
    kind = transform.get('type')
    return kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))


def pipeline_transforms(cfg: Config, type_name: str) -> list[dict]:
    """Every transform of ``type_name`` in the dataloaders' pipelines (the config's own dicts)."""
    found = []
    for loader in DATALOADERS:
        for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
            found += [t for t in _transforms(dataset.get('pipeline'))
                      if _type_name(t) == type_name]
    return found


def apply_transform_options(cfg: Config, options: Mapping[str, Any] | None) -> Config:
    """Set ``{'TYPE.key': value}`` on every pipeline transform of type TYPE, in place.

    The transform is named by its type, not by its index in a pipeline list, so the option
    still means the same thing when a pipeline gains a step. ``key`` may be dotted
    (``TYPE.a.b``) to reach into a dict field. A type that no dataloader's pipeline holds is a
    ``KeyError`` naming it.
    """
    for option, value in (options or {}).items():
        type_name, _, key = option.partition('.')
        if not type_name or not key:
            raise ValueError(f'--transform-options: {option!r} is not TYPE.key')
        transforms = pipeline_transforms(cfg, type_name)
        if not transforms:
            raise KeyError(f'--transform-options {option}: no transform of type {type_name!r} '
                           f'in the pipelines of {", ".join(DATALOADERS)}')
        *path, leaf = key.split('.')
        for transform in transforms:
            node = transform
            for part in path:
                if part not in node:
                    node[part] = {}
                node = node[part]  # ConfigDict stores a copy of what it is given: read it back
            node[leaf] = value
    return cfg


def apply_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    """``--cfg-options`` then ``--transform-options`` (so a cfg-option's pipeline is the one
    the transform options edit)."""
    if getattr(args, 'cfg_options', None):
        cfg.merge_from_dict(args.cfg_options)
    return apply_transform_options(cfg, getattr(args, 'transform_options', None))


def setup_process(init_default_scope: bool = False) -> None:
    """Registries, CPU op dispatch and the allocator policy, as every tool needs them."""
    from mmdet3d.utils import register_all_modules

    import concept_distill  # noqa: F401  (registers components; installs CPU op dispatch)
    from concept_distill.engine.cpu_allocator import retain_freed_memory

    retain_freed_memory()  # ~2x faster CPU training steps, more memory; docs/benchmarks.md
    register_all_modules(init_default_scope=init_default_scope)


def prepare_config(cfg: Config, args: argparse.Namespace) -> Config:
    """Set up the process (registries, CPU op dispatch, the allocator policy), then apply the
    command-line overrides mmdet3d's tools apply, in the same order."""
    setup_process(init_default_scope=False)
    cfg.launcher = args.launcher
    apply_overrides(cfg, args)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if getattr(args, 'trust_checkpoint', False):
        cfg.trust_checkpoint = True
    return cfg


def apply_train_options(cfg: Config, args: argparse.Namespace) -> Config:
    """``--amp``, ``--auto-scale-lr``, ``--sync_bn`` and ``--resume`` of tools/train.py, as
    mmdet3d's train.py applies them (AMP by this process's device: engine/amp.py)."""
    from concept_distill.engine.amp import enable_amp

    if args.amp:
        enable_amp(cfg)  # AmpOptimWrapper on a GPU, bf16 CPUAmpOptimWrapper on CPU
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError('--auto-scale-lr needs `auto_scale_lr.base_batch_size` in the '
                               f'config {args.config}')
        cfg.auto_scale_lr.enable = True
    if args.sync_bn != 'none':
        cfg.sync_bn = args.sync_bn
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def config_value(cfg: Config, dotted: str) -> Any:
    """``cfg['a']['b']`` for ``'a.b'`` (e.g. ``--teacher-key model.teacher``)."""
    node = cfg
    for part in dotted.split('.'):
        node = node[part]
    return node


def teacher_cache_dir(cfg: Config) -> str | None:
    """The ``cache_dir`` of the train pipeline's ``LoadTeacherFeatures`` (None without one)."""
    for dataset in _datasets((cfg.get('train_dataloader') or {}).get('dataset')):
        for transform in _transforms(dataset.get('pipeline')):
            if _type_name(transform) == 'LoadTeacherFeatures':
                return transform.get('cache_dir')
    return None


def build_runner(cfg: Config) -> Runner:
    """Build the runner the config names (``runner_type``), as mmdet3d's tools do.

    The project's configs name ``ConceptDistillRunner`` in ``configs/_base_/default_runtime.py``,
    so mmdet3d's own ``tools/train.py`` builds the same runner.
    """
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
