"""Running the teacher once over every frame of a config's paired datasets into a cache."""
from __future__ import annotations

import copy
import os
import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from mmdet3d.registry import DATASETS, MODELS
from torch import distributed as dist

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


def image_datasets(cfg, splits: tuple[str, ...]) -> tuple[list, dict, tuple | None]:
    """The config's paired datasets with an image-only pipeline (in test mode, with a flag:
    whether the split trains, i.e. draws other frames in other epochs), their image
    preprocessing (the `ResizeCropForTeacher` of the training pipeline) and the JPEG draft
    size of their `LoadPairedImage`."""
    datasets, preprocessing, decode_size = [], None, None
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
        if load.get('decode_size') is not None:
            decode_size = tuple(load['decode_size'])
        trains = not ds_cfg.get('test_mode', False)
        ds_cfg['pipeline'] = [load, resize]
        ds_cfg['test_mode'] = True
        datasets.append((DATASETS.build(ds_cfg), trains))
    return datasets, preprocessing, decode_size


def frame_items(datasets: list) -> list[tuple]:
    """(frame id, dataset, info getter, index, image path) of every frame the datasets can
    yield, each once: for a training split of a dataset with per-epoch frame offsets
    (`PairedFrameDataset.frame_stride`), the frames of every epoch."""
    items, seen = [], set()
    for ds, trains in datasets:
        if trains and hasattr(ds, 'get_frame_info'):
            getter, count = ds.get_frame_info, ds.num_frames
        else:
            getter, count = ds.get_data_info, len(ds)
        for idx in range(count):
            info = getter(idx)
            if info['frame_id'] not in seen:
                seen.add(info['frame_id'])
                items.append((info['frame_id'], ds, getter, idx, info['img_path']))
    return items


def refuse_random_teacher(cfg, teacher_cfg: dict) -> None:
    """Raise unless the teacher has its weights files or the config's model allows a random
    teacher (`model.allow_random_teacher=True`, as the distiller's own build requires)."""
    if (cfg.get('model') or {}).get('allow_random_teacher') is True:
        return
    mapping = teacher_cfg.get('mapping')
    missing = [(key, what) for key, what, absent in (
        ('pretrained', 'the CLIP teacher', teacher_cfg.get('pretrained') is None),
        ('mapping.checkpoint', 'the prefix mapping network',
         mapping is not None and mapping.get('checkpoint') is None)) if absent]
    if missing:
        key, what = missing[0]
        raise ValueError(
            f'model.teacher.{key} is not set: {what} would be randomly initialised, and the '
            f'cache would hold features of noise. Give the local file (model.teacher.{key}='
            '/path/to/file, e.g. with --cfg-options), or set model.allow_random_teacher=True '
            'to cache a random teacher on purpose (tests, the demo).')


class _FrameImages(torch.utils.data.Dataset):
    """The preprocessed image of each row to compute (decoded in dataloader workers)."""

    def __init__(self, rows: list[int], items: list, size: tuple[int, int]) -> None:
        self.rows, self.items, self.size = rows, items, size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple:
        row = self.rows[i]
        _, ds, getter, idx, path = self.items[row]
        try:
            # Digest first: if the file changes under us, the row is flagged as changed later
            # instead of silently pairing new bytes' digest with old bytes' features.
            digest = file_digests(path)
        except OSError:
            digest = None  # the pipeline names the problem
        try:
            img = ds.pipeline(getter(idx))['img']
            if digest is None:
                raise PairedDataError(f'image file not readable: {path}', path,
                                      'unreadable_image')
            return row, img, digest, None
        except PairedDataError as err:
            return (row, np.zeros((*self.size, 3), dtype=np.uint8),
                    np.zeros(2 * DIGEST_BYTES, dtype=np.uint8), f'{err.reason}: {err}')


def _collate(batch: list) -> tuple:
    """Rows, stacked images (B, 3, H, W) uint8, digests and {row: why invalid}."""
    rows = [b[0] for b in batch]
    imgs = torch.from_numpy(np.stack([b[1] for b in batch])).permute(0, 3, 1, 2)
    digests = np.stack([b[2] for b in batch])
    return rows, imgs, digests, {b[0]: b[3] for b in batch if b[3] is not None}


class _Ranks:
    """This process's rank among the extraction processes torchrun started (1 without)."""

    def __init__(self) -> None:
        self.rank = int(os.environ.get('RANK', 0))
        self.world = int(os.environ.get('WORLD_SIZE', 1))
        self.local_rank = int(os.environ.get('LOCAL_RANK', 0))
        if self.world > 1 and not dist.is_initialized():
            # gloo: barriers and small objects only, on CPU or GPU machines alike.
            dist.init_process_group('gloo', rank=self.rank, world_size=self.world)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj` (on every rank)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def resolve_device(device: str, local_rank: int = 0) -> str:
    """'auto': this process's GPU (LOCAL_RANK under torchrun) when there is one, else 'cpu'."""
    if device != 'auto':
        return device
    return f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'


def _log_to_stderr(message: str) -> None:
    """Print a line on stderr without breaking a running progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def extract_teacher_features(cfg, cache_dir: str, splits: tuple[str, ...] = ('train', 'val'),
                             teacher_cfg: dict | None = None, tokens: str = 'none',
                             batch_size: int = 16, device: str = 'auto',
                             max_chunks: int | None = None,
                             progress: Callable | None = None,
                             log: Callable[[str], None] | None = None,
                             workers: int = 0) -> dict:
    """Fill (or resume) the cache at `cache_dir` for every frame of `splits`.

    The teacher runs on batches of `batch_size` frames, on this process's GPU when there is
    one (`device='auto'`); `workers` dataloader processes decode the images. Started by
    torchrun (RANK / WORLD_SIZE), each process computes its own share of the frames and writes
    its rows of the one cache (rank 0 creates it first and writes the index at the end).
    A row is marked done only after its features are flushed, so a killed run resumes at the
    rows not done, with any number of processes. A resumed cache's arrays are checked against
    its index first (a damaged one is a `TeacherCacheError` naming the file), and rows already
    written are computed again when they are invalid (the image may be back) or their image
    changed (its digest differs). Unreadable frames are stored as invalid rows, named through
    `log` (default: stderr) and in the index and the summary. `max_chunks` stops early (a
    deliberate interruption, for tests). `progress(done, total)` is called once the cache is
    open and after every batch (this process's share under torchrun). Returns a summary dict.
    """
    start = time.perf_counter()
    log = log or _log_to_stderr
    teacher_cfg = teacher_cfg or cfg.model.get('teacher')
    if teacher_cfg is None:
        raise KeyError('no teacher config: give model.teacher in the config or --teacher-key')
    ranks = _Ranks()
    device = resolve_device(device, ranks.local_rank)
    datasets, preprocessing, decode_size = image_datasets(cfg, splits)
    items = frame_items(datasets)
    teacher = MODELS.build(teacher_cfg).to(device)
    key = dict(teacher=teacher.cache_key(),
               preprocessing=preprocessing_key(preprocessing, decode_size))
    size = tuple(preprocessing.get('size', (224, 224)))
    probe = teacher(torch.zeros(1, 3, *size, dtype=torch.uint8, device=device))
    tok_key = TOKEN_KEYS.get(tokens)
    if tokens != 'none' and (tok_key is None or tok_key not in probe):
        raise ValueError(f'the teacher gives no {tokens!r} tokens (choose from '
                         f"{['none'] + [k for k, v in TOKEN_KEYS.items() if v in probe]})")
    spec = (cache_dir, key, [item[0] for item in items], probe['global'].shape[-1],
            tuple(probe[tok_key].shape[1:]) if tok_key else None, tokens if tok_key else None)
    plan = None
    if ranks.rank == 0:  # creates (or checks) the files, then decides the work of everyone
        cache, done = TeacherFeatureCache.create_or_resume(*spec)
        redo = cache.rows_to_redo([item[4] for item in items])
        plan = dict(done=done, redo=redo, todo=cache.rows_todo().tolist(),
                    reasons=dict(cache.index.get('invalid', {})))
    plan = ranks.broadcast(plan)
    if ranks.rank != 0:
        cache, _ = TeacherFeatureCache.create_or_resume(*spec)
    done, redo = plan['done'], plan['redo']
    if ranks.rank == 0:
        for why in ('invalid', 'changed'):
            rows = [r for r, w in redo.items() if w == why]
            if rows:
                log(f'teacher features: recomputing {len(rows)} {why} frame(s) of {cache_dir}, '
                    f'e.g. {items[rows[0]][0]}')
    work = sorted(set(redo) | set(plan['todo']))
    # Contiguous shares: each process reads its images in the info files' order.
    share = [int(r) for r in np.array_split(np.asarray(work, dtype=np.int64),
                                            ranks.world)[ranks.rank]]
    reasons = plan['reasons']
    total = len(share) if ranks.world > 1 else len(items)
    finished = total - len(share)
    if progress is not None:
        progress(finished, total)
    loader = torch.utils.data.DataLoader(_FrameImages(share, items, size), batch_size=batch_size,
                                         num_workers=workers, collate_fn=_collate)
    mine: dict[str, str | None] = {}
    loop_start = time.perf_counter()
    try:
        for chunks, (rows, imgs, digests, why) in enumerate(loader):
            if max_chunks is not None and chunks >= max_chunks:
                break
            out = teacher(imgs.to(device, non_blocking=True))
            valid = np.array([row not in why for row in rows])
            g = out['global'].float().cpu().numpy()
            t = out[tok_key].float().cpu().numpy() if tok_key else None
            g[~valid] = 0
            if t is not None:
                t[~valid] = 0
            cache.write_rows(rows, g, valid, t, digests)
            for row in rows:
                fid = items[row][0]
                mine[fid] = why.get(row)
                if row in why:
                    log(f'teacher features: invalid frame {fid}: {why[row]}')
            finished += len(rows)
            if progress is not None:
                progress(finished, total)
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            log(f'teacher features: interrupted at {finished} of {total} frames; run the same '
                'command again to resume')
        if ranks.world == 1:  # also on Ctrl-C: the index names the invalid rows written
            cache.set_invalid(_merge_reasons(reasons, [mine]))
        raise
    loop_seconds = time.perf_counter() - loop_start
    outcomes = ranks.gather(mine)
    if ranks.rank == 0:
        reasons = _merge_reasons(reasons, outcomes)
        cache.set_invalid(reasons)
    reasons = ranks.broadcast(reasons)
    ranks.barrier()  # every rank's rows are flushed: the count below is final
    return dict(cache_dir=str(cache_dir), frames=len(items), resumed_at=done,
                done=cache.num_done(), recomputed=dict(Counter(redo.values())),
                invalid_frames=len(reasons), invalid=dict(sorted(reasons.items())), key=key,
                device=device, processes=ranks.world,
                # This process's decode + teacher throughput (set-up excluded).
                frames_per_second=round(len(mine) / loop_seconds, 2) if mine else None,
                seconds=round(time.perf_counter() - start, 2))


def _merge_reasons(reasons: dict[str, str], outcomes: list[dict]) -> dict[str, str]:
    """The index's invalid frames after this run: a recomputed frame is invalid (why) or not
    (None) any more."""
    merged = dict(reasons)
    for outcome in outcomes:
        for fid, why in outcome.items():
            if why is None:
                merged.pop(fid, None)
            else:
                merged[fid] = why
    return merged
