"""Every change this plugin makes to other libraries, in one table.

``concept_distill/__init__.py`` calls :func:`install_all` once; each patch is idempotent and
keeps the libraries' own behaviour wherever it is not needed. ``installed()`` reports which
are active::

    python -c "import concept_distill.patches as p; print(p.installed())"

Each patch, its target, where it acts, and why:

- ``mmcv_point_ops``: mmcv.ops furthest point sampling (plain and with distances), ball
  query, grouping, gather_points, three_nn, three_interpolate, knn, points_in_boxes_all/part.
  CPU only: mmcv 2.1 has no CPU kernels for them; CPU tensors run ``ops.cpu_point_ops``,
  CUDA tensors keep mmcv's kernels.
- ``minkunet_voxelization``: mmdet3d ``Det3DDataPreprocessor.voxelize`` with
  ``voxel_type='minkunet'``. CPU only: mmdet3d hard-codes ``.cuda()``; non-CUDA points use
  ``ops.voxelization``.
- ``spconv_cpu_algorithm``: spconv ``SparseConvolution.forward``. CPU only: the implicit-GEMM
  algorithm chosen at build time calls ``torch.cuda``; CPU features use ``ConvAlgo.Native``.
- ``spconv_state_dict_layout``: spconv ``SparseModule._load_from_state_dict`` (as mmdet3d
  overrides it). CPU and GPU: mmdet3d's override permutes every 2.x kernel of a plain state
  dict (e.g. mmengine's ``Pretrained`` init with a prefix), so pre-trained kernels were
  skipped; a kernel already in the 2.x shape is now loaded as is.
- ``minkunet_backbone_args``: mmdet3d ``MinkUNetBackbone.__init__``. CPU and GPU: it mutates
  the config's channel lists, so a second build from one config failed; it now gets copies.
- ``mmdet3d_points_loader``: mmdet3d ``LoadPointsFromFile._load_points``. CPU and GPU: a
  truncated ``.bin`` failed in numpy's reshape naming no file; it now names the file, its
  size and the row width (``load_dim``) expected.

The order matters in one place only: ``mmcv_point_ops`` rebinds ``points_in_boxes_*`` in the
modules that already imported them, so it runs after mmdet3d's box structures are imported
(importing any of the targets below imports them).
"""
from __future__ import annotations

import importlib
from types import ModuleType

# name -> (target, scope); the module ``concept_distill.patches.<name>`` has install()/installed().
PATCHES: dict[str, tuple[str, str]] = {
    'mmcv_point_ops': ('mmcv.ops point operators', 'CPU only'),
    'minkunet_voxelization': ('mmdet3d Det3DDataPreprocessor.voxelize (minkunet)', 'CPU only'),
    'spconv_cpu_algorithm': ('spconv SparseConvolution.forward', 'CPU only'),
    'spconv_state_dict_layout': ('spconv SparseModule._load_from_state_dict', 'CPU and GPU'),
    'minkunet_backbone_args': ('mmdet3d MinkUNetBackbone.__init__', 'CPU and GPU'),
    'mmdet3d_points_loader': ('mmdet3d LoadPointsFromFile._load_points', 'CPU and GPU'),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f'{__name__}.{name}')


def install_all() -> None:
    """Install every patch of :data:`PATCHES` (idempotent)."""
    for name in PATCHES:
        _module(name).install()


def installed() -> dict[str, bool]:
    """Which patches are active, by name."""
    return {name: bool(_module(name).installed()) for name in PATCHES}


__all__ = ['PATCHES', 'install_all', 'installed']
