"""Frames skipped inside two dataloader workers are summed into the main log (issue 18.7)."""
from __future__ import annotations

import copy
import pickle
import re
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from conftest import REPO_ROOT
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.runner import Runner

from concept_distill.hooks import SkippedFramesHook


def _broken_root(synthetic_root, tmp_path: Path) -> Path:
    """4 frames: frame 0 sees no point (camera moved away), frame 1's image is missing."""
    root = synthetic_root(copy_to=tmp_path / 'root', num_scenes=1, seed=2, num_frames=4,
                          points_per_scene=12000, image_size=(72, 96))
    (root / 'posed_images' / 'scene0000_00' / '00001.jpg').unlink()
    path = root / 'scannet_infos_val.pkl'
    infos = pickle.loads(path.read_bytes())
    pose = np.asarray(infos['data_list'][0]['frames'][0]['cam2global'])
    pose[:3, 3] += 50.0 * pose[:3, 2]  # 50 m along the view direction: nothing ahead
    infos['data_list'][0]['frames'][0]['cam2global'] = pose.tolist()
    path.write_bytes(pickle.dumps(infos))
    return root


def _loader(root: Path, num_workers: int, split: str = 'train'):
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/scannet-paired.py'))
    loader = copy.deepcopy(cfg[f'{split}_dataloader'])
    loader.update(batch_size=1, num_workers=num_workers, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    loader.dataset.update(data_root=str(root), ann_file='scannet_infos_val.pkl',
                          max_refetch=30)
    for t in loader.dataset.pipeline:
        if t['type'] == 'FrustumPointPairing':
            t.update(num_points=256, min_points=64)
    return Runner.build_dataloader(loader)


def _worker_warnings(text: str) -> Counter:
    """The skips the workers logged themselves, by reason (one warning per skip)."""
    return Counter(re.findall(r'skipping frame: .* \[(\w+): \d+ so far\]', text))


def test_worker_skips_are_totalled_in_the_main_log(synthetic_root, tmp_path, capfd) -> None:
    # The workers log through mmengine's current logger: make it a fresh one that prints, so
    # a logger left by an earlier test (another level, no console) cannot hide their lines.
    MMLogger.get_instance('test_skipped_frames_workers', log_level='INFO')
    loader = _loader(_broken_root(synthetic_root, tmp_path), num_workers=2)
    lines: list[str] = []
    logger = SimpleNamespace(warning=lines.append, info=lines.append)
    runner = SimpleNamespace(logger=logger, iter=0, train_dataloader=loader,
                             message_hub=MessageHub.get_instance('test_skipped_frames'))
    hook = SkippedFramesHook(interval=2)
    hook.before_train(runner)
    frames = []
    for epoch in range(2):
        for i, batch in enumerate(loader):  # batches 0, 2 from worker 0; 1, 3 from worker 1
            runner.iter = epoch * len(loader) + i
            hook.after_train_iter(runner, i, batch)
            frames += [s.frame_id for s in batch['data_samples']]
        hook.after_train_epoch(runner)
    # Items 0 and 1 (frames 0 and 1) are always replaced, by a random readable frame.
    assert len(frames) == 8 and set(frames) <= {'scene0000_00/00002', 'scene0000_00/00003'}
    logged = _worker_warnings(capfd.readouterr().out)
    assert logged['too_few_points'] >= 2 and logged['missing_image'] >= 2, logged
    # The main process's copy of the dataset saw none of it: the counts lived in the workers.
    assert dict(loader.dataset.skip_counts) == {}
    # ... and the hook's totals are exactly what the two workers counted.
    total = runner.message_hub.get_info('skipped_frames/train')
    assert total == dict(logged)
    epochs = [ln for ln in lines if 'frames skipped this epoch' in ln]
    assert len(epochs) == 2 and all('missing_image: ' in ln for ln in epochs)
    assert any(ln.startswith('SkippedFramesHook: frames skipped in the last 2 iterations (all '
                             'dataloader workers of this process): ') for ln in lines)
    hook.after_train(runner)
    assert lines[-1].endswith(', '.join(f'{k}: {v}' for k, v in sorted(total.items())))
    # A clean epoch says so.
    hook.after_train_epoch(runner)
    assert lines[-1].endswith('frames skipped this epoch (all dataloader workers): none')


def test_frames_dropped_at_info_reading_are_logged(synthetic_root, tmp_path) -> None:
    root = synthetic_root(copy_to=tmp_path / 'root', num_scenes=1, seed=2, num_frames=4,
                          points_per_scene=12000, image_size=(72, 96))
    path = root / 'scannet_infos_val.pkl'
    infos = pickle.loads(path.read_bytes())
    infos['data_list'][0]['frames'][3]['cam2global'][0][3] = float('inf')
    path.write_bytes(pickle.dumps(infos))
    lines: list[str] = []
    runner = SimpleNamespace(logger=SimpleNamespace(warning=lines.append, info=lines.append),
                             train_dataloader=_loader(root, num_workers=0))
    SkippedFramesHook().before_train(runner)
    assert lines == ['SkippedFramesHook: frames dropped when the training infos were read: '
                     'non_finite_pose: 1']
    shutil.rmtree(root)
