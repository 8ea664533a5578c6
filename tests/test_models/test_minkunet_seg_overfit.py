"""The ScanNet MinkUNet config, trained by the runner, over-fits one synthetic scene on CPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from mmengine.config import Config

from concept_distill.engine import ConceptDistillRunner

CONFIG = (REPO_ROOT / 'configs' / 'minkunet' /
          'minkunet34_w32_spconv_8xb2-cosine-200e_scannet-seg.py')
AUGMENTATIONS = ('GlobalRotScaleTrans', 'RandomFlip3D', 'RandomJitterPoints')


def overfit_config(data_root: Path, work_dir: Path, iters: int, width: int = 16,
                   voxel: float = 0.05) -> Config:
    """The real config, made small: narrow MinkUNet, 5 cm voxels, no augmentation, Adam."""
    cfg = Config.fromfile(str(CONFIG))
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0, deterministic=False)
    cfg.model.data_preprocessor.voxel_layer.voxel_size = [voxel] * 3
    w = width
    cfg.model.backbone.update(base_channels=w, encoder_channels=[w, 2 * w, 4 * w, 8 * w],
                              encoder_blocks=[1, 1, 1, 1],
                              decoder_channels=[8 * w, 4 * w, 2 * w, 2 * w],
                              decoder_blocks=[1, 1, 1, 1])
    cfg.model.decode_head.channels = 2 * w
    for loader, ann in ((cfg.train_dataloader, 'scannet_infos_train.pkl'),
                        (cfg.val_dataloader, 'scannet_infos_val.pkl'),
                        (cfg.test_dataloader, 'scannet_infos_val.pkl')):
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data_root), ann_file=ann)
    cfg.train_dataloader.dataset.pipeline = [
        t for t in cfg.train_dataloader.dataset.pipeline if t['type'] not in AUGMENTATIONS]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=0.01))
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=20)
    cfg.log_processor = dict(by_epoch=False)
    return cfg


# spconv's CPU path runs on one thread in these tests (see the fixture in conftest.py).
pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.mark.slow
def test_minkunet_overfits_one_synthetic_scene(tmp_path: Path, synthetic_root) -> None:
    data_root = synthetic_root(num_scenes=1, seed=0, points_per_scene=10000, num_frames=1)
    # one scene, in both splits
    assert ((data_root / 'meta_data' / 'scannetv2_train.txt').read_text()
            == (data_root / 'meta_data' / 'scannetv2_val.txt').read_text())
    torch.manual_seed(0)
    runner = ConceptDistillRunner.from_cfg(overfit_config(data_root, tmp_path / 'work', 80))
    before = runner.val_loop.run()
    runner.train()
    after = runner.val_loop.run()
    # SegMetric's mIoU averages over classes present in the scene (absent ones are NaN).
    assert after['miou'] >= 0.9, after
    assert after['miou'] > before['miou'] + 0.5
    assert after['acc'] >= 0.95
