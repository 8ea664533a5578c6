"""Running mmdet3d's own indoor converters (shipped in its package under `.mim/tools`)."""
from __future__ import annotations

import contextlib
import importlib
import io
import pickle
import shutil
import sys
import tempfile
from pathlib import Path


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


def run_indoor_converter(dataset: str, root_path: str | Path, out_dir: str | Path,
                         workers: int = 2, quiet: bool = True) -> list[Path]:
    """mmdet3d's `create_indoor_info_file` + `update_pkl_infos` (v2 infos) for `dataset`
    ('scannet', 'sunrgbd' or 's3dis'). Writes points/masks/seg_info under `root_path` and the
    v2 info files in `out_dir`; returns their paths.

    The v1 files go to a temporary folder first: mmdet3d's updater pauses 5 s when it
    rewrites a file in place. Empty splits get no info file.
    """
    root_path, out_dir = Path(root_path).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'v1_{dataset}_'))
    sink = io.StringIO() if quiet else None
    try:
        with _mmdet3d_tools(), contextlib.redirect_stdout(sink or sys.stdout):
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
