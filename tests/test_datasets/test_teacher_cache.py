"""Teacher-feature cache: chunked extraction that resumes, exact read-back through the paired
pipeline, no pickle, and a clear error for a cache of another teacher or preprocessing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS, MODELS, TRANSFORMS
from mmengine.config import Config

from concept_distill.datasets import TeacherCacheError
from concept_distill.datasets.converters import create_synthetic_scannet
from concept_distill.datasets.converters.teacher_extraction import extract_teacher_features

TINY = dict(embed_dim=32,
            vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32, patch_size=16),
            text_cfg=dict(layers=1, width=32, heads=2, vocab_size=64, context_length=8))
TEACHER = dict(type='CLIPTeacher', model_name='ViT-B-16', arch_overrides=TINY, seed=0)
RESIZE = dict(type='ResizeCropForTeacher', size=(224, 224), mode='squash')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cache')
    root = tmp / 'data'
    create_synthetic_scannet(root, num_scenes=1, seed=4, num_frames=5, points_per_scene=8000,
                             image_size=(72, 96))
    cfg_path = tmp / 'pretrain_tiny.py'
    cfg_path.write_text(
        f"_base_ = ['{REPO_ROOT}/configs/_base_/datasets/scannet-paired.py']\n"
        f"train_dataloader = dict(dataset=dict(data_root='{root}'))\n"
        f"val_dataloader = dict(dataset=dict(data_root='{root}'))\n"
        f'model = dict(teacher={TEACHER!r})\n')
    return tmp, root, cfg_path


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_extract_resume_and_read_back(setup, capsys, import_tool):
    tmp, root, cfg_path = setup
    cache_dir = tmp / 'teacher_cache'
    cfg = Config.fromfile(str(cfg_path))
    # A run "killed" after its first chunk of 2 frames ...
    calls = []
    part = extract_teacher_features(cfg, str(cache_dir), tokens='patch', batch_size=2,
                                    max_chunks=1, progress=lambda *a: calls.append(a))
    assert calls == [(0, 5), (2, 5)]  # (done, total): at the start, after the chunk
    assert part['frames'] == 5 and part['done'] == 2  # train and val share the scene
    with pytest.raises(TeacherCacheError, match=r'incomplete \(2 of 5'):
        TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir)))
    # ... resumes where it stopped, through the command-line tool.
    tool = import_tool('extract_teacher_features')
    summary = tool.main([str(cfg_path), '--cache-dir', str(cache_dir), '--tokens', 'patch',
                         '--batch-size', '2'])
    assert summary['resumed_at'] == 2 and summary['done'] == 5
    assert '5/5' in capsys.readouterr().err  # the bar starts at the resumed count
    assert summary['invalid_frames'] == 0

    # Plain files only: JSON index and float16 .npy that load without pickle.
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        'global.npy', 'index.json', 'progress.json', 'tokens.npy', 'valid.npy']
    index = json.loads((cache_dir / 'index.json').read_text())
    g = np.load(cache_dir / 'global.npy', allow_pickle=False)
    t = np.load(cache_dir / 'tokens.npy', allow_pickle=False)
    assert g.dtype == t.dtype == np.float16
    assert g.shape == (5, 32) and t.shape == (5, 4, 32)  # 224 px squashed to 32: 2x2 patches
    assert index['key']['teacher']['weights_digest'] == 'random-init-seed0'
    assert index['key']['preprocessing'] == dict(type='ResizeCropForTeacher', size=[224, 224],
                                                 mode='squash', crop='center')

    # The cached rows are the teacher's outputs for the same preprocessed frames.
    teacher = MODELS.build(TEACHER)
    ds_cfg = cfg.train_dataloader.dataset
    load = TRANSFORMS.build(dict(type='LoadPairedImage', with_depth=False,
                                 decode_size=(224, 224)))
    resize = TRANSFORMS.build(RESIZE)
    ds = DATASETS.build(dict(ds_cfg, pipeline=[load, resize]))
    imgs = np.stack([ds[i]['img'] for i in range(len(ds))])
    out = teacher(torch.from_numpy(imgs).permute(0, 3, 1, 2))
    rows = [index['frame_ids'].index(ds.get_data_info(i)['frame_id']) for i in range(len(ds))]
    np.testing.assert_allclose(g[rows], out['global'].numpy(), rtol=2e-2, atol=2e-3)
    np.testing.assert_allclose(t[rows], out['patch_tokens'].numpy(), rtol=2e-2, atol=2e-3)

    # The paired pipeline reads the cache and skips decoding the image.
    pipeline = [p for p in ds_cfg.pipeline if p['type'] != 'RandomFlip3D']
    pipeline[1] = dict(type='LoadPairedImage', with_pixels=False, with_depth=True)
    pipeline.insert(-1, dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir), tokens=True,
                             teacher=TEACHER, preprocessing=RESIZE))
    cached = DATASETS.build(dict(ds_cfg, pipeline=pipeline))
    sample = cached[3]
    assert set(sample['inputs']) == {'points'}
    row = index['frame_ids'].index(sample['data_samples'].frame_id)
    assert torch.equal(sample['data_samples'].teacher_global, torch.from_numpy(g[row]).float())
    assert sample['data_samples'].teacher_tokens.shape == (4, 32)
    assert sample['data_samples'].pixel_uv.max() < 223.5  # still in teacher-image pixels


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_cache_of_another_teacher_is_a_clear_error(setup):
    tmp, _, cfg_path = setup
    cache_dir = tmp / 'cache_b'
    cfg = Config.fromfile(str(cfg_path))
    extract_teacher_features(cfg, str(cache_dir), splits=('val',), batch_size=8)
    ok = TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir),
                               teacher=TEACHER, preprocessing=RESIZE))
    assert ok.cache.num_done() == 5
    with pytest.raises(TeacherCacheError,
                       match=rf"{cache_dir}.*'teacher.weights_digest' is 'random-init-seed0'"):
        TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir),
                              teacher=dict(TEACHER, seed=1)))
    with pytest.raises(TeacherCacheError, match=r"'teacher.model_name'"):
        TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir),
                              expected_key=dict(model_name='ViT-L-14')))
    with pytest.raises(TeacherCacheError, match=r"'preprocessing.size'"):
        TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir),
                              preprocessing=dict(RESIZE, size=(336, 336))))
    with pytest.raises(TeacherCacheError, match='holds no tokens'):
        TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir),
                              tokens=True))
    # Extracting another teacher into the same directory refuses to mix them.
    cfg.model.teacher = dict(TEACHER, seed=1)
    with pytest.raises(TeacherCacheError, match='already holds another teacher cache'):
        extract_teacher_features(cfg, str(cache_dir), splits=('val',))
    with pytest.raises(TeacherCacheError, match='no teacher-feature cache at'):
        TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(tmp / 'nowhere')))


def test_resume_with_another_token_set_is_an_error(tmp_path):
    """A cache made without tokens must not 'resume' as complete when tokens are asked for."""
    from concept_distill.datasets.teacher_cache import TeacherCacheError, TeacherFeatureCache

    key = dict(teacher=dict(model_name='toy'))
    TeacherFeatureCache.create_or_resume(tmp_path / 'c', key, ['a', 'b'], global_dim=4)
    with pytest.raises(TeacherCacheError, match="'tokens'"):
        TeacherFeatureCache.create_or_resume(tmp_path / 'c', key, ['a', 'b'], global_dim=4,
                                             tokens_shape=(3, 4), tokens_name='patch')
