"""Running the teacher once over every frame of a config's paired datasets into a cache."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch
from mmdet3d.registry import DATASETS, MODELS

from concept_distill.datasets.frustum_pairing import PairedDataError
from concept_distill.datasets.teacher_cache import TeacherFeatureCache
from concept_distill.datasets.transforms.load_teacher_features import preprocessing_key

TOKEN_KEYS = dict(patch='patch_tokens', prefix='prefix_tokens')


def _unwrap(dataset_cfg: dict) -> dict:
    # RepeatDataset / ClassBalancedDataset wrap the real dataset under `dataset`.
    while 'dataset' in dataset_cfg and 'pipeline' not in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def find_transform(pipeline: list, type_name: str) -> dict | None:
    """First transform config of `type_name` in a pipeline (None if absent)."""
    return next((copy.deepcopy(t) for t in pipeline if t.get('type') == type_name), None)


def image_datasets(cfg, splits: tuple[str, ...]) -> tuple[list, dict]:
    """The config's paired datasets with an image-only pipeline, and their image
    preprocessing (the `ResizeCropForTeacher` of the training pipeline)."""
    datasets, preprocessing = [], None
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader is None:
            raise KeyError(f'the config has no {split}_dataloader')
        ds_cfg = copy.deepcopy(_unwrap(loader['dataset']))
        resize = find_transform(ds_cfg['pipeline'], 'ResizeCropForTeacher')
        if resize is None:
            # A cache-reading pipeline decodes no image; its LoadTeacherFeatures says how the
            # cached images were preprocessed.
            cached = find_transform(ds_cfg['pipeline'], 'LoadTeacherFeatures') or {}
            resize = copy.deepcopy(cached.get('preprocessing'))
        if resize is None:
            raise KeyError(f'{split}_dataloader pipeline has no ResizeCropForTeacher (nor a '
                           'LoadTeacherFeatures with `preprocessing`): the cache must know '
                           'the image preprocessing')
        if resize.get('crop') == 'random':
            raise ValueError('random crops cannot be cached; use crop="center"')
        if preprocessing is None:
            preprocessing = resize
        elif preprocessing_key(resize) != preprocessing_key(preprocessing):
            raise ValueError('train and val pipelines preprocess images differently; '
                             'extract one split at a time')
        load = find_transform(ds_cfg['pipeline'], 'LoadPairedImage') or dict(
            type='LoadPairedImage')
        load.update(with_pixels=True, with_depth=False)
        ds_cfg['pipeline'] = [load, resize]
        ds_cfg['test_mode'] = True
        datasets.append(DATASETS.build(ds_cfg))
    return datasets, preprocessing


def extract_teacher_features(cfg, cache_dir: str, splits: tuple[str, ...] = ('train', 'val'),
                             teacher_cfg: dict | None = None, tokens: str = 'none',
                             batch_size: int = 16, device: str = 'cpu',
                             max_chunks: int | None = None,
                             progress: Callable | None = None) -> dict:
    """Fill (or resume) the cache at `cache_dir` for every frame of `splits`.

    Rows are written chunk by chunk (`batch_size` frames); the progress marker moves only
    after a chunk is flushed, so a killed run resumes at the first unfinished chunk.
    Unreadable frames are stored as invalid rows and counted. `max_chunks` stops early
    (a deliberate interruption, for tests). `progress(done, total)` is called once the cache
    is open (with the resumed count) and after every chunk. Returns a summary dict.
    """
    start = time.perf_counter()
    teacher_cfg = teacher_cfg or cfg.model.get('teacher')
    if teacher_cfg is None:
        raise KeyError('no teacher config: give model.teacher in the config or --teacher-key')
    datasets, preprocessing = image_datasets(cfg, splits)
    items, seen = [], set()
    for ds in datasets:
        for idx in range(len(ds)):
            fid = ds.get_data_info(idx)['frame_id']
            if fid not in seen:
                seen.add(fid)
                items.append((fid, ds, idx))
    teacher = MODELS.build(teacher_cfg).to(device)
    key = dict(teacher=teacher.cache_key(), preprocessing=preprocessing_key(preprocessing))
    h, w = preprocessing.get('size', (224, 224))
    probe = teacher(torch.zeros(1, 3, h, w, dtype=torch.uint8, device=device))
    tok_key = TOKEN_KEYS.get(tokens)
    if tokens != 'none' and (tok_key is None or tok_key not in probe):
        raise ValueError(f'the teacher gives no {tokens!r} tokens (choose from '
                         f"{['none'] + [k for k, v in TOKEN_KEYS.items() if v in probe]})")
    cache, done = TeacherFeatureCache.create_or_resume(
        cache_dir, key, [fid for fid, _, _ in items], probe['global'].shape[-1],
        tuple(probe[tok_key].shape[1:]) if tok_key else None, tokens if tok_key else None)
    resumed_at, invalid = done, 0
    if progress is not None:
        progress(done, len(items))
    for chunks, lo in enumerate(range(done, len(items), batch_size)):
        if max_chunks is not None and chunks >= max_chunks:
            break
        chunk = items[lo:lo + batch_size]
        imgs, valid = [], np.zeros(len(chunk), dtype=bool)
        for j, (_, ds, idx) in enumerate(chunk):
            try:
                imgs.append(ds.pipeline(ds.get_data_info(idx))['img'])
                valid[j] = True
            except PairedDataError:
                imgs.append(np.zeros((h, w, 3), dtype=np.uint8))
        batch = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).to(device)
        out = teacher(batch)
        g = out['global'].float().cpu().numpy()
        t = out[tok_key].float().cpu().numpy() if tok_key else None
        g[~valid] = 0
        if t is not None:
            t[~valid] = 0
        cache.write_rows(lo, g, valid, t)
        invalid += int((~valid).sum())
        if progress is not None:
            progress(lo + len(chunk), len(items))
    return dict(cache_dir=str(cache_dir), frames=len(items), resumed_at=resumed_at,
                done=cache.num_done(), invalid_frames=invalid, key=key,
                seconds=round(time.perf_counter() - start, 2))
