"""Teacher-feature cache: chunked extraction that resumes, exact read-back through the paired
pipeline, no pickle, and a clear error for a cache of another teacher or preprocessing."""
from __future__ import annotations

import json
import os

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
        f'model = dict(allow_random_teacher=True, teacher={TEACHER!r})\n')
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
        'digests.npy', 'global.npy', 'index.json', 'tokens.npy', 'valid.npy']
    index = json.loads((cache_dir / 'index.json').read_text())
    g = np.load(cache_dir / 'global.npy', allow_pickle=False)
    t = np.load(cache_dir / 'tokens.npy', allow_pickle=False)
    assert g.dtype == t.dtype == np.float16
    assert g.shape == (5, 32) and t.shape == (5, 4, 32)  # 224 px squashed to 32: 2x2 patches
    assert index['key']['teacher']['weights_digest'] == 'random-init-seed0'
    assert index['key']['preprocessing'] == dict(type='ResizeCropForTeacher', size=[224, 224],
                                                 mode='squash', crop='center',
                                                 decode_size=[224, 224])

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


# ---------------------------------------------------------------- the cache bound to its data
SMALL_ROOT = dict(num_scenes=1, seed=4, num_frames=5, points_per_scene=8000,
                  image_size=(72, 96))


def _config(tmp, root) -> Config:
    """The tiny pre-training config of `setup`, on another data root."""
    path = tmp / f'cfg_{root.name}.py'
    path.write_text(
        f"_base_ = ['{REPO_ROOT}/configs/_base_/datasets/scannet-paired.py']\n"
        f"train_dataloader = dict(dataset=dict(data_root='{root}'))\n"
        f"val_dataloader = dict(dataset=dict(data_root='{root}'))\n"
        f'model = dict(allow_random_teacher=True, teacher={TEACHER!r})\n')
    return Config.fromfile(str(path))


def _cached_dataset(cfg: Config, cache_dir, **load_kwargs):
    """The train dataset reading the cache, as a training config builds it."""
    ds_cfg = cfg.train_dataloader.dataset
    pipeline = list(ds_cfg.pipeline)
    pipeline[1] = dict(type='LoadPairedImage', with_pixels=False, with_depth=True)
    pipeline.insert(-1, dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir),
                             teacher=TEACHER, preprocessing=RESIZE, **load_kwargs))
    return DATASETS.build(dict(ds_cfg, pipeline=pipeline))


def _check_at_training_start(dataset) -> list[str]:
    """FrozenTeacherHook's cache check on a runner whose train loop reads `dataset`."""
    from types import SimpleNamespace

    from concept_distill.hooks.frozen_teacher_hook import FrozenTeacherHook

    messages = []
    logger = SimpleNamespace(info=messages.append, warning=messages.append)
    loop = SimpleNamespace(dataloader=SimpleNamespace(dataset=dataset))
    runner = SimpleNamespace(_train_loop=loop, _val_loop=None, _test_loop=None,
                             logger=logger)
    model = SimpleNamespace(teacher=MODELS.build(TEACHER), cached_tokens=None)
    FrozenTeacherHook._check_cache(runner, model)
    return messages


def _images(root) -> list:
    return sorted((root / 'posed_images' / 'scene0000_00').glob('*.jpg'))


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_cache_of_other_images_is_refused_at_training_start(tmp_path, synthetic_root):
    """Issue 18.1: the data regenerated in place (other seed, same frame ids), old cache kept."""
    root = synthetic_root(copy_to=tmp_path / 'data', **SMALL_ROOT)
    cfg, cache_dir = _config(tmp_path, root), tmp_path / 'cache'
    extract_teacher_features(cfg, str(cache_dir), splits=('train',), batch_size=8)
    assert any('matches the 5 frames' in m for m in _check_at_training_start(
        _cached_dataset(cfg, cache_dir)))

    other = synthetic_root(**dict(SMALL_ROOT, seed=5))
    for img in _images(root):
        img.write_bytes((other / img.relative_to(root)).read_bytes())
    with pytest.raises(TeacherCacheError, match=rf"{cache_dir} was built from other data: the "
                       r"image of frame 'scene0000_00/00000'.*extract_teacher_features.py again"):
        _check_at_training_start(_cached_dataset(cfg, cache_dir))
    # Re-extracting recomputes the changed frames; the cache then passes.
    summary = extract_teacher_features(cfg, str(cache_dir), splits=('train',), batch_size=8)
    assert summary['recomputed'] == {'changed': 5} and summary['invalid_frames'] == 0
    _check_at_training_start(_cached_dataset(cfg, cache_dir))

    # Same size, same mtime, one byte changed: the digest still sees it.
    img = _images(root)[2]
    stat, data = img.stat(), bytearray(img.read_bytes())
    data[len(data) // 2] ^= 0xFF
    img.write_bytes(bytes(data))
    os.utime(img, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(TeacherCacheError, match="frame 'scene0000_00/00002'"):
        _check_at_training_start(_cached_dataset(cfg, cache_dir))
    assert _check_at_training_start(_cached_dataset(cfg, cache_dir, verify_images='none')) == []


def test_quick_and_full_image_check(tmp_path):
    """The quick check reads both ends of each file; the full one (on request) every byte."""
    from concept_distill.datasets.teacher_cache import TeacherFeatureCache, file_digests

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f'{i}.jpg')
        paths[-1].write_bytes(rng.bytes(20000))
    cache, _ = TeacherFeatureCache.create_or_resume(tmp_path / 'c', dict(k=1), ['a', 'b', 'c'],
                                                    global_dim=2)
    cache.write_rows(0, np.zeros((3, 2)), np.ones(3), digests=[file_digests(p) for p in paths])
    frames = list(zip('abc', map(str, paths)))
    assert cache.check_frames(frames)['frames'] == 3
    data = bytearray(paths[1].read_bytes())
    data[10000] ^= 1  # in the middle: outside the quick digest's spans
    paths[1].write_bytes(bytes(data))
    assert cache.check_frames(frames)['frames'] == 3
    with pytest.raises(TeacherCacheError, match="frame 'b'"):
        cache.check_frames(frames, full=True)
    with pytest.raises(TeacherCacheError, match="frame 'x' is not in the teacher-feature"):
        cache.check_frames([('x', str(paths[0]))])
    # Every image missing: the paths are wrong (e.g. relative to another directory).
    with pytest.raises(TeacherCacheError, match=r'none of the 3 images.*exists, e\.g\. nowhere'):
        cache.check_frames([(f, f'nowhere/{f}.jpg') for f in 'abc'])
    # A relative cache_dir that does not exist says where it looked.
    with pytest.raises(TeacherCacheError, match=r'rel/cache .*resolved: /.*working directory'):
        TeacherFeatureCache('rel/cache').check_complete()


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_damaged_cache_is_refused_by_extraction_and_training(setup, tmp_path, damage):
    """Issue 18.4: global.npy cut short or deleted; neither a rerun nor training may use it."""
    _, root, cfg_path = setup
    cfg, cache_dir = Config.fromfile(str(cfg_path)), tmp_path / 'cache'
    extract_teacher_features(cfg, str(cache_dir), splits=('train',), batch_size=8)
    target = cache_dir / 'global.npy'
    if damage == 'truncate':
        with open(target, 'r+b') as f:
            f.truncate(target.stat().st_size - 10)
        match = rf'{target} is truncated .*delete that folder'
    else:
        target.unlink()
        match = rf'{target} is missing: .*delete that folder'
    with pytest.raises(TeacherCacheError, match=match):
        extract_teacher_features(cfg, str(cache_dir), splits=('train',), batch_size=8)
    with pytest.raises(TeacherCacheError, match=match):  # when the dataset is built
        _cached_dataset(cfg, cache_dir)


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_invalid_frames_are_named_and_retried(tmp_path, synthetic_root):
    """Issue 18.5: a truncated and a missing JPEG are named; restored, they become valid."""
    root = synthetic_root(copy_to=tmp_path / 'data', **SMALL_ROOT)
    cfg, cache_dir = _config(tmp_path, root), tmp_path / 'cache'
    imgs = _images(root)
    saved = {p: p.read_bytes() for p in imgs[1:3]}
    imgs[1].write_bytes(saved[imgs[1]][:len(saved[imgs[1]]) // 2])
    imgs[2].unlink()
    lines = []
    summary = extract_teacher_features(cfg, str(cache_dir), splits=('train',), batch_size=2,
                                       log=lines.append)
    bad = ['scene0000_00/00001', 'scene0000_00/00002']
    assert summary['invalid_frames'] == 2 and sorted(summary['invalid']) == bad
    assert summary['invalid'][bad[0]].startswith('corrupt_image: ')
    assert summary['invalid'][bad[1]].startswith('missing_image: ')
    assert all(any(f'invalid frame {fid}: ' in line for line in lines) for fid in bad)
    index = json.loads((cache_dir / 'index.json').read_text())
    assert index['invalid'] == summary['invalid']
    # Training names why the frame has no features.
    from concept_distill.datasets import PairedDataError

    load = TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir)))
    with pytest.raises(PairedDataError, match=r'00001 has no teacher features .*corrupt_image'):
        load.transform(dict(frame_id=bad[0]))

    for path, data in saved.items():
        path.write_bytes(data)
    summary = extract_teacher_features(cfg, str(cache_dir), splits=('train',), batch_size=2,
                                       log=lines.append)
    assert summary['recomputed'] == {'invalid': 2}
    assert summary['invalid_frames'] == 0 and summary['invalid'] == {}
    assert np.load(cache_dir / 'valid.npy').all()
    assert json.loads((cache_dir / 'index.json').read_text())['invalid'] == {}
    # The retried rows are what a fresh extraction computes.
    fresh = tmp_path / 'fresh'
    extract_teacher_features(cfg, str(fresh), splits=('train',), batch_size=8)
    np.testing.assert_allclose(np.load(cache_dir / 'global.npy'), np.load(fresh / 'global.npy'),
                               rtol=1e-2, atol=1e-3)
    np.testing.assert_array_equal(np.load(cache_dir / 'digests.npy'),
                                  np.load(fresh / 'digests.npy'))
    _check_at_training_start(_cached_dataset(cfg, cache_dir))


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_interrupted_extraction_says_how_to_resume(setup, tmp_path):
    """Issue 18.7: Ctrl-C names where the extraction stopped and that a rerun resumes."""
    _, _, cfg_path = setup
    cfg, lines = Config.fromfile(str(cfg_path)), []

    def ctrl_c_after_first_chunk(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_teacher_features(cfg, str(tmp_path / 'c'), splits=('train',), batch_size=2,
                                 progress=ctrl_c_after_first_chunk, log=lines.append)
    assert lines == ['teacher features: interrupted at 2 of 5 frames; run the same command '
                     'again to resume']
    summary = extract_teacher_features(cfg, str(tmp_path / 'c'), splits=('train',),
                                       batch_size=2, log=lines.append)
    assert summary['resumed_at'] == 2 and summary['done'] == 5


# ---------------------------------------------------------------- issue 17: cached mode at scale
def _tiny_weights(tmp_path) -> str:
    """A local open_clip state dict of the tiny architecture (as a user's weights file)."""
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model('ViT-B-16', pretrained=None, **TINY)
    path = tmp_path / 'tiny_clip.pt'
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_key_from_the_config_equals_the_built_teachers(tmp_path):
    """The lightweight key (no network built) is the key a built teacher gives."""
    from concept_distill.models.distill.clip_teacher import teacher_cache_key, teacher_spec

    mapping = dict(mapping_type='mlp', num_prefix=3, prefix_dim=24)
    for cfg in (TEACHER, dict(TEACHER, precision='bf16', resize_mode='shortest'),
                dict(TEACHER, mapping=mapping), dict(TEACHER, pretrained=_tiny_weights(tmp_path))):
        teacher = MODELS.build(cfg)
        assert teacher_cache_key(cfg) == teacher.cache_key(), cfg
        spec = teacher_spec(cfg)
        assert (spec['embed_dim'], spec['grid_size'], spec['num_prefix'], spec['prefix_dim']) \
            == (teacher.embed_dim, teacher.grid_size, teacher.num_prefix, teacher.prefix_dim)
    with pytest.raises(FileNotFoundError, match='nowhere.pt'):
        teacher_cache_key(dict(TEACHER, pretrained='nowhere.pt'))


def test_precision_and_resize_change_the_key():
    from concept_distill.datasets.transforms.load_teacher_features import preprocessing_key
    from concept_distill.models.distill.clip_teacher import teacher_cache_key

    base = teacher_cache_key(TEACHER)
    assert base['precision'] == 'fp32' and base['interpolation'] == 'bicubic'
    assert teacher_cache_key(dict(TEACHER, precision='fp16')) != base
    assert teacher_cache_key(dict(TEACHER, precision='bf16')) != base
    assert teacher_cache_key(dict(TEACHER, resize_mode='shortest')) != base
    assert preprocessing_key(RESIZE) != preprocessing_key(dict(RESIZE, size=(112, 112)))
    # LoadPairedImage's JPEG draft decode gives other pixels than a full decode.
    assert preprocessing_key(RESIZE, (224, 224)) != preprocessing_key(RESIZE, None)
    assert preprocessing_key(RESIZE, (224, 224)) != preprocessing_key(RESIZE, (448, 448))


@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_cache_of_another_precision_or_decode_size_is_refused(setup, tmp_path):
    _, _, cfg_path = setup
    cfg = Config.fromfile(str(cfg_path))
    cache_dir = str(tmp_path / 'c')
    extract_teacher_features(cfg, cache_dir, splits=('val',), batch_size=8)
    with pytest.raises(TeacherCacheError, match=r"'teacher.precision' is 'fp32'"):
        TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=cache_dir,
                              teacher=dict(TEACHER, precision='bf16')))
    for t in cfg.val_dataloader.dataset.pipeline:
        if t['type'] == 'LoadPairedImage':
            t['decode_size'] = (448, 448)
    with pytest.raises(TeacherCacheError,
                       match=r"'preprocessing.decode_size' is \[224, 224\] there"):
        extract_teacher_features(cfg, cache_dir, splits=('val',), batch_size=8)


def test_cached_training_builds_no_teacher(setup, monkeypatch):
    """Every sample cached: no CLIP network is built (nor moved), at build or in a step."""
    import open_clip
    from distill_builders import distiller_cfg, optim_wrapper_for, paired_batch

    tmp, _, cfg_path = setup
    cache_dir = tmp / 'cache_no_teacher'
    with pytest.warns(UserWarning, match='RANDOMLY'):  # the cache itself needs the network
        extract_teacher_features(Config.fromfile(str(cfg_path)), str(cache_dir),
                                 splits=('val',), batch_size=8, tokens='patch')
    built = []

    def no_build(*args, **kwargs):
        built.append(args)
        raise AssertionError('open_clip.create_model called in cached mode')

    monkeypatch.setattr(open_clip, 'create_model', no_build)
    load = TRANSFORMS.build(dict(type='LoadTeacherFeatures', cache_dir=str(cache_dir),
                                 teacher=TEACHER, preprocessing=RESIZE, tokens=True,
                                 verify_images='none'))
    with pytest.warns(UserWarning, match='RANDOMLY'):  # said at build, network or not
        model = MODELS.build(distiller_cfg(teacher=dict(arch_overrides=TINY),
                                           loss=dict(set_weight=0.0)))
    optim = optim_wrapper_for(model)
    batch = paired_batch(b=3, img=False)
    for sample, frame_id in zip(batch['data_samples'], load.cache.index['frame_ids']):
        out = load.transform(dict(frame_id=frame_id, img_shape=(224, 224)))
        sample.teacher_global = torch.from_numpy(out['teacher_global'])
        sample.teacher_tokens = torch.from_numpy(out['teacher_tokens'])
    model.train()
    log = model.train_step(batch, optim)
    assert torch.isfinite(log['loss'])
    from types import SimpleNamespace

    from concept_distill.hooks.frozen_teacher_hook import FrozenTeacherHook

    loop = SimpleNamespace(dataloader=SimpleNamespace(
        dataset=SimpleNamespace(pipeline=SimpleNamespace(transforms=[load]))))
    runner = SimpleNamespace(model=model, optim_wrapper=optim, _train_loop=loop,
                             _val_loop=None, _test_loop=None,
                             logger=SimpleNamespace(info=lambda m: None,
                                                    warning=lambda m: None))
    FrozenTeacherHook(log_alignment=True).before_train(runner)
    model.to('cpu')
    assert built == [] and not model.teacher.built
    # An online batch (images, no cached features) does build it.
    with pytest.raises(AssertionError, match='cached mode'):
        model.train_step(paired_batch(b=3), optim)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two torchrun processes importing mmdet3d: ~100 s on 2 cores
@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_two_process_extraction_writes_the_one_process_cache(setup, tmp_path):
    """torchrun --nproc_per_node 2 (gloo): each rank its own rows of one cache, as 1 process."""
    import subprocess
    import sys

    _, _, cfg_path = setup
    one, two = tmp_path / 'one', tmp_path / 'two'
    extract_teacher_features(Config.fromfile(str(cfg_path)), str(one), batch_size=2,
                             tokens='patch')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_port', str(_free_port()), str(REPO_ROOT / 'tools/extract_teacher_features.py'),
         str(cfg_path), '--cache-dir', str(two), '--batch-size', '2', '--tokens', 'patch',
         '--device', 'cpu'],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '"processes": 2' in proc.stdout
    for name in ('valid.npy', 'digests.npy'):
        np.testing.assert_array_equal(np.load(one / name), np.load(two / name), err_msg=name)
    # Features: each row the same within one float16 step (the processes run other thread
    # counts and batch splits, so float32 round-off may flip the last float16 bit).
    for name in ('global.npy', 'tokens.npy'):
        a, b = np.load(one / name).astype(np.float32), np.load(two / name).astype(np.float32)
        np.testing.assert_allclose(a, b, rtol=2 ** -10, atol=1e-6, err_msg=name)
    assert json.loads((one / 'index.json').read_text()) == \
        json.loads((two / 'index.json').read_text())


def test_extract_tool_refuses_a_weightless_teacher_unless_allowed(setup, tmp_path, import_tool):
    """Issue 13: a real recipe without CLIP weights would cache features of noise."""
    tmp, _, cfg_path = setup
    strict = tmp_path / 'strict.py'
    strict.write_text(f"_base_ = ['{cfg_path}']\nmodel = dict(allow_random_teacher=False)\n")
    tool = import_tool('extract_teacher_features')
    with pytest.raises(ValueError, match=r'model.teacher.pretrained is not set: .*'
                                         r'model.allow_random_teacher=True'):
        tool.main([str(strict), '--cache-dir', str(tmp_path / 'c')])
    mapped = tmp_path / 'mapped.py'
    mapped.write_text(f"_base_ = ['{strict}']\nmodel = dict(teacher=dict("
                      "pretrained='clip.bin', mapping=dict(mapping_type='mlp')))\n")
    with pytest.raises(ValueError, match=r'model.teacher.mapping.checkpoint is not set'):
        tool.main([str(mapped), '--cache-dir', str(tmp_path / 'c')])
    assert not (tmp_path / 'c').exists()  # refused before anything is written
