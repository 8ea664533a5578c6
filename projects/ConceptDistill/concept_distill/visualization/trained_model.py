"""A model built from its config with a run's weights, ready for inference in a figure."""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn


def build_trained_model(model_cfg: Mapping, checkpoint: str, trusted: bool = False,
                        strict: bool = True) -> nn.Module:
    """``MODELS.build(model_cfg)`` with ``checkpoint``'s state dict, in eval mode.

    ``trusted`` loads with ``weights_only=False`` (mmengine training checkpoints pickle their
    message hub): only for checkpoints of your own runs.
    """
    from mmdet3d.registry import MODELS

    from concept_distill.checkpoint import load_checkpoint_file

    model = MODELS.build(model_cfg)
    state = load_checkpoint_file(checkpoint, trusted=trusted)['state_dict']
    model.load_state_dict(state, strict=strict)
    return model.eval()
