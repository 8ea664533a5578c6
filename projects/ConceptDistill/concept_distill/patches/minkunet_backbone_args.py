"""Stop ``MinkUNetBackbone`` from mutating the channel lists of the config it is built from.

mmdet3d 1.4's ``MinkUNetBackbone.__init__`` calls ``encoder_channels.insert(0, ...)`` and
``decoder_channels.insert(0, ...)`` on the lists it is given, and the registry passes the
config's own lists. Building a second model from the same config (a checkpoint check before
training, a benchmark, a test) then fails its ``num_stages == len(encoder_channels)``
assertion; its mutable default lists are mutated the same way. Installed on import: the
constructor receives copies.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

from mmdet3d.models.backbones import MinkUNetBackbone

_PATCH_FLAG = '_concept_distill_copies_args'
_LIST_ARGS = ('encoder_channels', 'encoder_blocks', 'decoder_channels', 'decoder_blocks')


def install() -> None:
    """Wrap ``MinkUNetBackbone.__init__`` so list arguments are copied first (idempotent)."""
    original = MinkUNetBackbone.__init__
    if getattr(original, _PATCH_FLAG, False):
        return

    signature = inspect.signature(original)

    @functools.wraps(original)
    def init_copying_lists(self: MinkUNetBackbone, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()  # the defaults are lists too
        for name in _LIST_ARGS:
            if isinstance(bound.arguments.get(name), (list, tuple)):
                bound.arguments[name] = list(bound.arguments[name])
        original(*bound.args, **bound.kwargs)

    setattr(init_copying_lists, _PATCH_FLAG, True)
    MinkUNetBackbone.__init__ = init_copying_lists


def installed() -> bool:
    """Whether ``MinkUNetBackbone`` copies its list arguments."""
    return bool(getattr(MinkUNetBackbone.__init__, _PATCH_FLAG, False))
