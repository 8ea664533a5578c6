"""Load spconv 2.x weights from state dicts that carry no version metadata.

mmdet3d replaces spconv's ``SparseModule._load_from_state_dict`` with one that converts kernel
weights from the spconv 1.x layout (D, H, W, in, out) to 2.x's (out, D, H, W, in) whenever the
state dict's metadata does not say ``version == 2``. Plain dicts have no metadata, and
mmengine's ``Pretrained`` init with ``prefix='backbone.'`` always builds a plain dict, so every
sparse-conv kernel of a spconv 2.x checkpoint is permuted to a wrong shape and skipped with a
warning: the pre-trained backbone silently keeps its random kernels.

:func:`install` (run on import) treats a kernel whose shape already
equals the module's 2.x shape as 2.x (no permutation); a kernel that only fits after the
permutation is still converted from 1.x as mmdet3d intends. The only ambiguous case, a 1.x
kernel whose permuted and unpermuted shapes coincide (in == out == every kernel size), is read
as 2.x.
"""
from __future__ import annotations

import functools
from typing import Any

_PATCH_FLAG = '_concept_distill_layout_aware'


def install() -> bool:
    """Wrap ``SparseModule._load_from_state_dict`` (mmdet3d's override); idempotent.

    Returns False when spconv 2.x is not installed.
    """
    try:
        from mmdet3d.models.layers.spconv import IS_SPCONV2_AVAILABLE
        from spconv.pytorch import SparseModule
    except ImportError:
        return False
    if not IS_SPCONV2_AVAILABLE:
        return False
    current = SparseModule._load_from_state_dict
    if getattr(current, _PATCH_FLAG, False):
        return True

    @functools.wraps(current)
    def _load_from_state_dict(self: Any, state_dict: Any, prefix: str, local_metadata: dict,
                              *args: Any, **kwargs: Any) -> None:
        if local_metadata.get('version') != 2:
            weight = state_dict.get(prefix + 'weight')
            param = self._parameters.get('weight')
            if (weight is not None and param is not None
                    and tuple(weight.shape) == tuple(param.shape)):
                local_metadata = dict(local_metadata, version=2)
        return current(self, state_dict, prefix, local_metadata, *args, **kwargs)

    setattr(_load_from_state_dict, _PATCH_FLAG, True)
    SparseModule._load_from_state_dict = _load_from_state_dict
    return True


def installed() -> bool:
    """Whether the layout-aware loading is in place."""
    try:
        from spconv.pytorch import SparseModule
    except ImportError:
        return False
    return bool(getattr(SparseModule._load_from_state_dict, _PATCH_FLAG, False))
