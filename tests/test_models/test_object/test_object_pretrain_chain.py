"""Object pre-training end to end on CPU, through the tools: synthetic objects
(tools/create_object_data.py) -> teacher cache per (shape, view)
(tools/extract_teacher_features.py) -> concept distillation on the ShapeNet-55 view pairs
(tools/train.py, configs/demo/pretrain_ppt_objects_synthetic.py) -> backbone export
(tools/export_backbone.py) -> the export loads with 0 missing / 0 unexpected keys into the
classifier and the part segmentor at the demo size, and both fine-tune from it
(tools/train.py, the concept-distill object configs)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from mmengine.config import Config

from concept_distill.checkpoint.backbone_checkpoint import check_backbone_checkpoint
from concept_distill.datasets.converters.synthetic.objects import global_part_ids
from concept_distill.datasets.teacher_cache import TeacherFeatureCache

pytestmark = pytest.mark.slow

DEMO = REPO_ROOT / 'configs' / 'demo' / 'pretrain_ppt_objects_synthetic.py'
CLS = REPO_ROOT / 'configs' / 'classification' / \
    'ppt-12x384_concept-distill_1xb32-300e_modelnet40-1k.py'
SEG = REPO_ROOT / 'configs' / 'part_segmentation' / \
    'ppt-12x384_concept-distill_1xb32-300e_shapenet-part.py'
CLASSES = ('chair', 'table', 'sofa')
VIEWS = 2
ITERS = 8
# The demo's backbone, restated for the downstream configs (the same small transformer).
SMALL = dict(embed_dims=128, depth=4, num_heads=4, patch_hidden_channels=(32, 64),
             patch_fuse_channels=128)

FINETUNE = """
_base_ = ['{base}']
model = dict({model}, backbone=dict({small}, init_cfg=dict(checkpoint='{export}')))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict({dataset}))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict({dataset}))
test_dataloader = val_dataloader
param_scheduler = []
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=3, val_interval=3)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=3))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
"""


def _env() -> dict:
    # One intra-op thread: on a shared 2-core machine two OpenMP threads wait on each other.
    return dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')


def _train(cfg: Path, work_dir: Path, *extra: str) -> list[dict]:
    """tools/train.py in a subprocess; the training scalars it logged."""
    proc = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), str(cfg),
                           '--work-dir', str(work_dir), *extra], cwd=REPO_ROOT, env=_env(),
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (path,) = work_dir.glob('*/vis_data/scalars.json')
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope='module')
def chain(tmp_path_factory, import_tool) -> dict:
    """Every step of the chain once; the paths and logs the tests look at."""
    tmp = tmp_path_factory.mktemp('object_chain')
    data = tmp / 'objects'
    torch.set_num_threads(1)
    import_tool('create_object_data').main([
        '--out-dir', str(data), '--num-per-class', '3', '--test-per-class', '1',
        '--val-per-class', '0', '--classes', *CLASSES, '--num-points', '3000',
        '--num-views', str(VIEWS), '--image-size', '64'])
    views_root = data / 'ShapeNet55'
    cache = tmp / 'teacher_cache'
    roots = [f'train_dataloader.dataset.data_root={views_root}/',
             f'val_dataloader.dataset.data_root={views_root}/']
    summary = import_tool('extract_teacher_features').main([
        str(DEMO), '--cache-dir', str(cache), '--tokens', 'patch', '--batch-size', '8',
        '--cfg-options', *roots])
    work = tmp / 'pretrain'
    scalars = _train(DEMO, work, '--cfg-options', *roots, f'train_cfg.max_iters={ITERS}',
                     f'train_cfg.val_interval={ITERS}', 'default_hooks.logger.interval=2',
                     '--transform-options', f'LoadTeacherFeatures.cache_dir={cache}')
    export = tmp / 'backbone.pth'
    code = import_tool('export_backbone').main([str(work / f'iter_{ITERS}.pth'), str(export),
                                                '--config', str(DEMO), '--trust-checkpoint'])
    assert code == 0 and export.is_file()
    return dict(data=data, cache=cache, summary=summary, scalars=scalars, export=export,
                work=work, tmp=tmp)


def test_teacher_cache_holds_one_row_per_shape_and_view(chain):
    shapes = sorted(p.stem for p in (chain['data'] / 'ShapeNet55' / 'shapenet_pc').glob('*.npy'))
    assert len(shapes) == 3 * len(CLASSES)
    cache = TeacherFeatureCache(chain['cache'])
    assert sorted(cache.index['frame_ids']) == sorted(f'{s}/{v:02d}' for s in shapes
                                                      for v in range(VIEWS))
    assert chain['summary']['invalid_frames'] == 0
    g, t = cache.get(f'{shapes[0]}/01', tokens=True)
    assert g.ndim == 1 and t.ndim == 2 and float(abs(g).sum()) > 0


def test_pretraining_on_view_pairs_logs_finite_losses(chain):
    losses = [s['loss'] for s in chain['scalars'] if 'loss' in s]
    assert losses and all(math.isfinite(x) for x in losses)
    assert any('align/top1' in s for s in chain['scalars'])  # validated on the test shapes
    assert (chain['work'] / 'backbone_latest.pth').is_file()  # the hook's export too


def _small(cfg_path: Path) -> dict:
    backbone = dict(Config.fromfile(str(cfg_path), import_custom_modules=False).model.backbone)
    backbone.pop('init_cfg', None)
    return dict(backbone, **SMALL)


@pytest.mark.parametrize('cfg_path', [CLS, SEG], ids=['classifier', 'part_segmentor'])
def test_export_loads_with_no_missing_or_unexpected_keys(chain, cfg_path):
    report = check_backbone_checkpoint(str(chain['export']), _small(cfg_path), 'backbone.')
    assert report.ok and not report.missing and not report.unexpected, report


def _finetune(chain: dict, name: str, base: Path, model: str, dataset: str) -> list[dict]:
    cfg = chain['tmp'] / f'{name}.py'
    small = ', '.join(f'{k}={v!r}' for k, v in SMALL.items())
    cfg.write_text(FINETUNE.format(base=base, model=model, small=small, export=chain['export'],
                                   dataset=dataset))
    return _train(cfg, chain['tmp'] / name)


def test_classifier_fine_tunes_from_the_export(chain):
    root = chain['data'] / 'modelnet40_normal_resampled'
    scalars = _finetune(chain, 'cls', CLS, f'num_classes={len(CLASSES)}',
                        f"data_root='{root}/'")
    losses = [s['loss_cls'] for s in scalars if 'loss_cls' in s]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert any(k.endswith('overall_acc') for s in scalars for k in s)


def test_part_segmentor_fine_tunes_from_the_export(chain):
    root = chain['data'] / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    num_parts = sum(len(v) for v in global_part_ids(CLASSES).values())
    model = (f'num_parts={num_parts}, num_categories={len(CLASSES)}, '
             'feature_blocks=(1, 2, 3), propagate_dims=128')
    scalars = _finetune(chain, 'seg', SEG, model,
                        f"data_root='{root}/', seg_classes_file='seg_classes.json'")
    losses = [s['loss_seg'] for s in scalars if 'loss_seg' in s]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert any(k.endswith('instance_miou') for s in scalars for k in s)
