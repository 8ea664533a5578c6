"""Running mmdet3d's own indoor converters (shipped in its package under `.mim/tools`)."""
from __future__ import annotations

import contextlib
import importlib
import io
import pickle
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from concept_distill.datasets.converters.output_guard import run_guarded_outputs

S3DIS_AREAS = [f'Area_{i}' for i in range(1, 7)]


@contextlib.contextmanager
def _mmdet3d_tools():
    """Make mmdet3d's `tools` package importable (ours is a plain folder of the same name)."""
    import mmdet3d

    mim = Path(mmdet3d.__file__).parent / '.mim'
    if not (mim / 'tools' / 'dataset_converters' / 'indoor_converter.py').is_file():
        raise FileNotFoundError(f'mmdet3d converters not found under {mim}/tools: reinstall '
                                'mmdet3d==1.4.0 from the package registry')
    saved = {k: v for k, v in sys.modules.items() if k == 'tools' or k.startswith('tools.')}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(mim))
    try:
        yield
    finally:
        sys.path.remove(str(mim))
        for k in [k for k in sys.modules if k == 'tools' or k.startswith('tools.')]:
            del sys.modules[k]
        sys.modules.update(saved)


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) \
        if path.is_file() else 0


def expected_samples(dataset: str, root: Path) -> int:
    """How many samples mmdet3d's converter will visit (its split lists), for progress."""
    if dataset == 'scannet':
        return sum(_lines(root / 'meta_data' / f'scannetv2_{s}.txt')
                   for s in ('train', 'val', 'test'))
    if dataset == 'sunrgbd':
        return sum(_lines(root / 'sunrgbd_trainval' / f'{s}_data_idx.txt')
                   for s in ('train', 'val'))
    areas = [root / 'Stanford3dDataset_v1.2_Aligned_Version' / a for a in S3DIS_AREAS]
    return sum(sum(1 for p in a.iterdir() if p.is_dir()) for a in areas if a.is_dir())


# What mmdet3d's converters (and, for ScanNet, our scene export) write inside a dataset root,
# besides the `<dataset>_infos_*.pkl` files in the output folder.
OUTPUT_DIRS = {
    'scannet': ('scannet_instance_data', 'points', 'instance_mask', 'semantic_mask',
                'super_points', 'seg_info'),
    'sunrgbd': ('points',),
    's3dis': ('points', 'instance_mask', 'semantic_mask', 'seg_info'),
}


def indoor_outputs(dataset: str, root: str | Path, out_dir: str | Path) -> list[Path]:
    """Every folder and info file a conversion of `dataset` writes (present or not)."""
    return ([Path(root) / d for d in OUTPUT_DIRS[dataset]]
            + sorted(Path(out_dir).glob(f'{dataset}_infos_*.pkl')))


class _SampleCounter(io.TextIOBase):
    """A stdout stand-in: counts the converter's per-sample lines ("<split> sample_idx: ...")
    and reports them to `progress(done, total)`; the rest is dropped or passed through."""

    def __init__(self, progress: Callable[[int, int | None], None] | None, total: int,
                 passthrough=None) -> None:
        super().__init__()
        self.progress, self.total, self.passthrough = progress, total, passthrough
        self.done = 0
        self._lock = threading.Lock()  # the converters print from a thread pool

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            if self.passthrough is not None:
                self.passthrough.write(text)
            hits = text.count(' sample_idx: ')
            if hits and self.progress is not None:
                self.done += hits
                # Past an undercounted estimate the bar becomes a plain counter.
                self.progress(self.done, self.total if self.done <= self.total else None)
        return len(text)

    def flush(self) -> None:
        if self.passthrough is not None:
            self.passthrough.flush()


def run_indoor_converter(dataset: str, root_path: str | Path, out_dir: str | Path,
                         workers: int = 2, quiet: bool = True,
                         progress: Callable[[int, int | None], None] | None = None
                         ) -> list[Path]:
    """mmdet3d's `create_indoor_info_file` + `update_pkl_infos` (v2 infos) for `dataset`
    ('scannet', 'sunrgbd' or 's3dis'). Writes points/masks/seg_info under `root_path` and the
    v2 info files in `out_dir`; returns their paths.

    The v1 files go to a temporary folder first: mmdet3d's updater pauses 5 s when it
    rewrites a file in place. Empty splits get no info file. `progress(done, total)` follows
    the samples the converter has read (the segmentation infos and the v2 rewrite come after).
    mmdet3d's own progress bar is silenced: it writes to the stdout mmengine saw at import,
    which would mix with the caller's output (create_data.py prints JSON there).
    """
    root_path, out_dir = Path(root_path).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'v1_{dataset}_'))
    sink = _SampleCounter(progress, expected_samples(dataset, root_path),
                          None if quiet else sys.stdout)
    try:
        with _mmdet3d_tools(), contextlib.redirect_stdout(sink), \
                mock.patch('mmengine.track_iter_progress', lambda tasks, *a, **k: tasks):
            indoor = importlib.import_module('tools.dataset_converters.indoor_converter')
            update = importlib.import_module('tools.dataset_converters.update_infos_to_v2')
            indoor.create_indoor_info_file(str(root_path), dataset, str(tmp), workers=workers)
            written = []
            for v1 in sorted(tmp.glob('*.pkl')):
                with open(v1, 'rb') as f:
                    if not pickle.load(f):
                        continue  # an empty split (mmdet3d's updater fails on those)
                update.update_pkl_infos(dataset, out_dir=str(out_dir), pkl_path=str(v1))
                written.append(out_dir / v1.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def convert_indoor(dataset: str, root_path: str | Path, out_dir: str | Path | None = None,
                   workers: int = 2, progress: Callable[[int, int | None], None] | None = None,
                   force: bool = False) -> dict:
    """`create_data.py sunrgbd|s3dis`: mmdet3d's converter under the output guard.

    Outputs (``indoor_outputs``) that an earlier run of this command did not write are
    refused unless `force`, which deletes them first (never the raw data); the run's record
    is written last (``output_guard.run_guarded_outputs``). Returns the summary.
    """
    root = Path(root_path)
    out = Path(out_dir) if out_dir is not None else root
    if expected_samples(dataset, root) == 0:  # checked before anything is deleted
        raise FileNotFoundError(f'no {dataset} samples found under {root.resolve()} (the split '
                                'lists or room folders mmdet3d\'s converter reads are missing); '
                                'nothing was changed. See docs/data_preparation.md')

    def run() -> dict:
        written = run_indoor_converter(dataset, root, out, workers, progress=progress)
        return dict(root=str(root), info_files=[str(p) for p in written])

    return run_guarded_outputs(root, dataset, dict(root_path=str(root), out_dir=str(out)),
                               indoor_outputs(dataset, root, out), force, run)
