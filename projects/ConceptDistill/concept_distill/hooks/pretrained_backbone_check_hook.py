"""Downstream guard: a pre-trained backbone must really load (mmengine's Pretrained only warns)."""
from __future__ import annotations

import torch
from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from concept_distill.checkpoint.backbone_checkpoint import (
    check_backbone_checkpoint,
    extract_backbone_state,
    load_checkpoint_dict,
)


def _pretrained_cfg(backbone) -> dict | None:
    """The backbone's `init_cfg` entry of type 'Pretrained' with a prefix, if any."""
    init_cfg = getattr(backbone, 'init_cfg', None)
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []
    for cfg in cfgs:
        if cfg.get('type') == 'Pretrained' and cfg.get('checkpoint'):
            return dict(cfg)
    return None


@HOOKS.register_module()
class PretrainedBackboneCheckHook(Hook):
    """Stops fine-tuning when `backbone.init_cfg=dict(type='Pretrained', ...)` did not load.

    mmengine's `PretrainedInit` loads with `strict=False` and only *warns* about missing,
    unexpected or wrongly shaped keys, so a mismatched checkpoint silently leaves a random
    backbone. This hook, added to a downstream config's `custom_hooks`:

    - before_run (before any weight is initialised or loaded): checks the checkpoint's
      `backbone.*` keys and shapes against the model's backbone; any mismatch raises an error
      naming the keys.
    - before_train (after `init_weights`): checks that the backbone's tensors equal the
      checkpoint's, unless `load_from` / resume replaced them afterwards.
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_values: bool = True) -> None:
        self.check_values = check_values
        self._cfg: dict | None = None

    @staticmethod
    def _backbone(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return getattr(model, 'backbone', None)

    def before_run(self, runner) -> None:
        """Key and shape check of the configured pre-trained backbone."""
        backbone = self._backbone(runner)
        self._cfg = _pretrained_cfg(backbone) if backbone is not None else None
        if self._cfg is None:
            runner.logger.info('PretrainedBackboneCheckHook: the backbone has no Pretrained '
                               'init_cfg; nothing to check')
            return
        prefix = self._cfg.get('prefix') or ''
        check_backbone_checkpoint(self._cfg['checkpoint'], backbone, prefix)
        runner.logger.info(f'PretrainedBackboneCheckHook: {self._cfg["checkpoint"]} matches the '
                           f'backbone (0 missing, 0 unexpected keys)')

    def before_train(self, runner) -> None:
        """The initialised backbone holds the checkpoint's tensors."""
        if self._cfg is None or not self.check_values:
            return
        if runner._load_from is not None or runner._resume:
            runner.logger.info('PretrainedBackboneCheckHook: load_from / resume replaced the '
                               'initial weights; value check skipped')
            return
        backbone = self._backbone(runner)
        prefix = self._cfg.get('prefix') or ''
        ckpt = load_checkpoint_dict(self._cfg['checkpoint'])
        expected = extract_backbone_state(ckpt, prefix, str(self._cfg['checkpoint']))
        own = backbone.state_dict()
        differ = sorted(k for k, v in expected.items()
                        if not torch.equal(own[k].detach().cpu(), v.to(own[k].dtype)))
        if differ:
            raise RuntimeError(
                f'PretrainedBackboneCheckHook: after init_weights, {len(differ)} backbone '
                f'tensors differ from {self._cfg["checkpoint"]} (e.g. {differ[:5]}): the '
                f'pre-trained weights were not loaded')
        runner.logger.info(f'PretrainedBackboneCheckHook: all {len(expected)} backbone '
                           f'tensors equal the pre-trained checkpoint')
