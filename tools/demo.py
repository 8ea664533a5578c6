"""The main job (`make demo`).

Smoke stage: builds mmdet3d's own VoteNet ScanNet config and the CLIP teacher on CPU and
prints their sizes. The end-to-end demo (synthetic data -> teacher cache -> pre-training ->
VoteNet fine-tuning from scratch and from the pre-trained backbone -> report) replaces it.
"""
from __future__ import annotations

import argparse
import os.path as osp
import time


def count_params(module) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in module.parameters())


def smoke(clip_model: str, clip_weights: str | None) -> None:
    """Build VoteNet (mmdet3d's unmodified ScanNet config) and the CLIP teacher."""
    t0 = time.time()
    import mmdet3d
    import open_clip
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    import concept_distill  # noqa: F401

    register_all_modules()
    cfg_path = osp.join(osp.dirname(mmdet3d.__file__), '.mim', 'configs', 'votenet',
                        'votenet_8xb8_scannet-3d.py')
    votenet = MODELS.build(Config.fromfile(cfg_path).model)
    teacher = open_clip.create_model(clip_model, pretrained=clip_weights)
    rows = [('VoteNet (mmdet3d votenet_8xb8_scannet-3d.py)', count_params(votenet)),
            ('  backbone PointNet2SASSG', count_params(votenet.backbone)),
            (f'CLIP {clip_model} image encoder', count_params(teacher.visual))]
    print('\nConceptDistill smoke run')
    for name, n in rows:
        print(f'  {name:<48} {n / 1e6:8.2f} M parameters')
    weights = clip_weights or 'none (random init: demonstrates the pipeline only)'
    print(f'  teacher weights: {weights}')
    print(f'  built in {time.time() - t0:.1f} s')


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--clip-model', default='ViT-B-16')
    parser.add_argument('--clip-weights', default=None, help='local open_clip checkpoint')
    args = parser.parse_args()
    smoke(args.clip_model, args.clip_weights)


if __name__ == '__main__':
    main()
