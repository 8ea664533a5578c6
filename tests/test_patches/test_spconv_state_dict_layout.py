"""spconv 2.x kernels load from plain state dicts (mmengine's prefixed `Pretrained` init)."""
from __future__ import annotations

from pathlib import Path

import torch
from mmdet3d.registry import MODELS
from mmengine.runner.checkpoint import load_state_dict

BACKBONE = dict(type='MinkUNetBackbone', in_channels=6, base_channels=8,
                encoder_channels=[8, 16, 16, 16], encoder_blocks=[1, 1, 1, 1],
                decoder_channels=[16, 16, 16, 16], decoder_blocks=[1, 1, 1, 1],
                sparseconv_backend='spconv')


def _differing(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_plain_state_dict_loads_every_kernel() -> None:
    torch.manual_seed(0)
    src, dst = MODELS.build(BACKBONE), MODELS.build(BACKBONE)
    plain = {k: v.clone() for k, v in src.state_dict().items()}  # no `_metadata`
    assert len(_differing(plain, dst.state_dict())) > 30
    load_state_dict(dst, plain, strict=True)  # mmdet3d alone: size mismatches
    assert _differing(plain, dst.state_dict()) == []


def test_legacy_spconv1_layout_is_still_converted() -> None:
    torch.manual_seed(0)
    src, dst = MODELS.build(BACKBONE), MODELS.build(BACKBONE)
    legacy = {}
    for k, v in src.state_dict().items():
        # spconv 2.x (out, D, H, W, in) -> 1.x (D, H, W, in, out) for the sparse kernels
        legacy[k] = v.permute(1, 2, 3, 4, 0).clone() if v.dim() == 5 else v.clone()
    load_state_dict(dst, legacy, strict=True)
    assert _differing(src.state_dict(), dst.state_dict()) == []


def test_pretrained_init_with_prefix_loads_the_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = MODELS.build(BACKBONE)
    path = tmp_path / 'backbone.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}, path)
    dst = MODELS.build(dict(BACKBONE, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                    prefix='backbone.')))
    dst.init_weights()
    assert _differing(src.state_dict(), dst.state_dict()) == []
