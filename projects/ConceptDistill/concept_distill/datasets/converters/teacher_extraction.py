"""Running the teacher once over every frame of a config's paired datasets into a cache."""
from __future__ import annotations

import copy
import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from mmdet3d.registry import DATASETS, MODELS

from concept_distill.datasets.frustum_pairing import PairedDataError
from concept_distill.datasets.teacher_cache import (
    DIGEST_BYTES,
    TeacherFeatureCache,
    file_digests,
)
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


def _log_to_stderr(message: str) -> None:
    """Print a line on stderr without breaking a running progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _compute_rows(rows: list[int], items: list, teacher, tok_key: str | None,
                  size: tuple[int, int], device: str) -> tuple:
    """Teacher outputs of `rows`: (global, tokens or None, valid, digests, {row: why})."""
    h, w = size
    imgs, valid = [], np.zeros(len(rows), dtype=bool)
    digests = np.zeros((len(rows), 2 * DIGEST_BYTES), dtype=np.uint8)
    why = {}
    for j, row in enumerate(rows):
        _, ds, idx, path = items[row]
        try:
            # Digest first: if the file changes under us, the row is flagged as changed later
            # instead of silently pairing new bytes' digest with old bytes' features.
            digest = file_digests(path)
        except OSError:
            digest = None  # the pipeline names the problem
        try:
            img = ds.pipeline(ds.get_data_info(idx))['img']
            if digest is None:
                raise PairedDataError(f'image file not readable: {path}', path,
                                      'unreadable_image')
            imgs.append(img)
            valid[j], digests[j] = True, digest
        except PairedDataError as err:
            imgs.append(np.zeros((h, w, 3), dtype=np.uint8))
            why[row] = f'{err.reason}: {err}'
    batch = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).to(device)
    out = teacher(batch)
    g = out['global'].float().cpu().numpy()
    t = out[tok_key].float().cpu().numpy() if tok_key else None
    g[~valid] = 0
    if t is not None:
        t[~valid] = 0
    return g, t, valid, digests, why


def extract_teacher_features(cfg, cache_dir: str, splits: tuple[str, ...] = ('train', 'val'),
                             teacher_cfg: dict | None = None, tokens: str = 'none',
                             batch_size: int = 16, device: str = 'cpu',
                             max_chunks: int | None = None,
                             progress: Callable | None = None,
                             log: Callable[[str], None] | None = None) -> dict:
    """Fill (or resume) the cache at `cache_dir` for every frame of `splits`.

    Rows are written chunk by chunk (`batch_size` frames); the progress marker moves only
    after a chunk is flushed, so a killed run resumes at the first unfinished chunk. A resumed
    cache's arrays are checked against its index first (a damaged one is a `TeacherCacheError`
    naming the file), and rows already written are computed again when they are invalid (the
    image may be back) or their image changed (its digest differs). Unreadable frames are
    stored as invalid rows, named through `log` (default: stderr) and in the index and the
    summary. `max_chunks` stops early (a deliberate interruption, for tests).
    `progress(done, total)` is called once the cache is open and after every chunk.
    Returns a summary dict.
    """
    start = time.perf_counter()
    log = log or _log_to_stderr
    teacher_cfg = teacher_cfg or cfg.model.get('teacher')
    if teacher_cfg is None:
        raise KeyError('no teacher config: give model.teacher in the config or --teacher-key')
    datasets, preprocessing = image_datasets(cfg, splits)
    items, seen = [], set()
    for ds in datasets:
        for idx in range(len(ds)):
            info = ds.get_data_info(idx)
            if info['frame_id'] not in seen:
                seen.add(info['frame_id'])
                items.append((info['frame_id'], ds, idx, info['img_path']))
    teacher = MODELS.build(teacher_cfg).to(device)
    key = dict(teacher=teacher.cache_key(), preprocessing=preprocessing_key(preprocessing))
    size = tuple(preprocessing.get('size', (224, 224)))
    probe = teacher(torch.zeros(1, 3, *size, dtype=torch.uint8, device=device))
    tok_key = TOKEN_KEYS.get(tokens)
    if tokens != 'none' and (tok_key is None or tok_key not in probe):
        raise ValueError(f'the teacher gives no {tokens!r} tokens (choose from '
                         f"{['none'] + [k for k, v in TOKEN_KEYS.items() if v in probe]})")
    cache, done = TeacherFeatureCache.create_or_resume(
        cache_dir, key, [item[0] for item in items], probe['global'].shape[-1],
        tuple(probe[tok_key].shape[1:]) if tok_key else None, tokens if tok_key else None)
    redo = cache.rows_to_redo([item[3] for item in items])
    for why in ('invalid', 'changed'):
        rows = [r for r, w in redo.items() if w == why]
        if rows:
            log(f'teacher features: recomputing {len(rows)} {why} frame(s) of {cache_dir}, '
                f'e.g. {items[rows[0]][0]}')
    work = sorted(redo) + list(range(done, len(items)))
    reasons = {fid: r for fid, r in cache.index.get('invalid', {}).items()}
    finished = len(items) - len(work)
    if progress is not None:
        progress(finished, len(items))
    try:
        for chunks, lo in enumerate(range(0, len(work), batch_size)):
            if max_chunks is not None and chunks >= max_chunks:
                break
            rows = work[lo:lo + batch_size]
            g, t, valid, digests, why = _compute_rows(rows, items, teacher, tok_key, size,
                                                      device)
            cache.write_rows(rows, g, valid, t, digests)
            for row in rows:
                fid = items[row][0]
                if row in why:
                    reasons[fid] = why[row]
                    log(f'teacher features: invalid frame {fid}: {why[row]}')
                else:
                    reasons.pop(fid, None)
            finished += len(rows)
            if progress is not None:
                progress(finished, len(items))
    except KeyboardInterrupt:
        log(f'teacher features: interrupted at {finished} of {len(items)} frames; run the same '
            'command again to resume')
        raise
    finally:
        # Also on Ctrl-C: the index names the invalid rows written so far.
        cache.set_invalid(reasons)
    return dict(cache_dir=str(cache_dir), frames=len(items), resumed_at=done,
                done=cache.num_done(), recomputed=dict(Counter(redo.values())),
                invalid_frames=len(reasons), invalid=dict(sorted(reasons.items())), key=key,
                seconds=round(time.perf_counter() - start, 2))
