"""Never mixing datasets: what `create_data.py` writes carries a record written last.

A folder of its own (`synthetic`): the manifest `.create_data.json` records the sub-command,
its parameters and its summary. A rerun with the same parameters finds the complete result
and does nothing; any other non-empty folder (another dataset, other parameters, a killed
run) is refused unless `force`, which empties it first, so old and new files never mix.

Outputs inside a dataset root (`sunrgbd`, `s3dis`, `scannet`: mmdet3d's `points/`, masks,
`seg_info/`, the info files): `run_guarded_outputs` records the run in
`.create_data_<command>.json` (written before with `complete: false`, rewritten last). Such
outputs written by anything else (mmdet3d's own scripts, another dataset) are refused unless
`force`, which deletes them before converting; this command's own earlier result, complete
or killed, is converted again in place.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

MANIFEST = '.create_data.json'
# Parameters that change how a result is made, not what it is.
_IGNORED = ('force', 'workers', 'dataset')


class OutputExistsError(FileExistsError):
    """An output folder holds something other than this command's complete result."""


def read_json(path: Path) -> dict | None:
    """A JSON file's contents; None when it is absent or unreadable (e.g. cut short)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (a kill leaves the old file or the new one, never half)."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _normalised(params: dict) -> dict:
    """Comparable parameters: JSON types, paths resolved."""
    out = {}
    for k, v in params.items():
        if k in _IGNORED:
            continue
        if k in ('root_path', 'out_dir') and v is not None:
            v = str(Path(v).resolve())
        out[k] = v
    return json.loads(json.dumps(out))


def _empty(folder: Path) -> None:
    """Remove everything inside `folder` (the folder itself stays: it may be a mount)."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def claim_output_dir(folder: str | Path, command: str, params: dict,
                     force: bool = False) -> dict | None:
    """Make `folder` ready for `command` run with `params`.

    Returns the previous manifest when the folder already holds this command's complete
    result with the same parameters (nothing to redo). Otherwise the folder must be absent or
    empty; a non-empty one raises `OutputExistsError` naming it and what it holds, unless
    `force`, which empties it. Returns None then.
    """
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    manifest = read_json(folder / MANIFEST)
    wanted = _normalised(params)
    if manifest and manifest.get('command') == command and manifest.get('params') == wanted:
        return manifest
    if force:
        _empty(folder)
        return None
    if manifest is None:
        held = 'files that are not a complete create_data.py result (another dataset, or an ' \
               'interrupted run)'
    else:
        changed = sorted(k for k in set(wanted) | set(manifest.get('params', {}))
                         if wanted.get(k) != manifest.get('params', {}).get(k))
        held = (f"the result of `create_data.py {manifest.get('command')}` with other "
                f"parameters ({', '.join(changed) or 'the sub-command'} differ)")
    raise OutputExistsError(
        f'{folder} is not empty: it holds {held}. Pass --force to empty it and write the new '
        'result there (everything in it is deleted), or choose another folder')


def run_guarded(folder: str | Path, command: str, params: dict, force: bool,
                run: Callable[[], dict]) -> dict:
    """`run()` into `folder` under `claim_output_dir`, then write the manifest (last).

    A complete previous result with the same parameters is kept: its summary is returned
    with `up_to_date: True`.
    """
    previous = claim_output_dir(folder, command, params, force)
    if previous is not None:
        return dict(previous.get('summary', {}), up_to_date=True)
    out_dir = params.get('out_dir')
    if out_dir and Path(out_dir).resolve() != Path(folder).resolve() and not force:
        # --out-dir may be shared by several datasets: only its info files are ours to replace.
        infos = sorted(Path(out_dir).glob('*_infos_*.pkl'))
        if infos:
            raise OutputExistsError(f'{out_dir} already holds info files ({infos[0].name}, ...): '
                                    'pass --force to replace them, or choose another --out-dir')
    summary = run()
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json(Path(folder) / MANIFEST, dict(command=command, params=_normalised(params),
                                             summary=summary))
    return summary


def _holds_something(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def run_guarded_outputs(root: str | Path, command: str, params: dict, outputs: list[Path],
                        force: bool, run: Callable[[], dict]) -> dict:
    """`run()` writing `outputs` (folders and files) inside a dataset `root` it also reads.

    Outputs already present that no run of `command` recorded (no
    `root/.create_data_<command>.json`) raise `OutputExistsError` naming them, unless `force`,
    which deletes them first (an earlier result of this command too), so old and new never
    mix. The record is written with `complete: false` before `run()` and with the summary
    last: a killed run is this command's own and is simply run again.
    """
    root = Path(root)
    marker = root / f'.create_data_{command}.json'
    record = read_json(marker)
    present = [Path(p) for p in outputs if _holds_something(Path(p))]
    ours = record is not None and record.get('command') == command
    if present and not ours and not force:
        names = ', '.join(str(p) for p in present[:4]) + (', ...' if len(present) > 4 else '')
        raise OutputExistsError(
            f'{root} already holds {names}, which no `create_data.py {command}` run wrote here '
            f'(no {marker.name}; e.g. mmdet3d\'s own scripts, or another dataset). Pass --force '
            'to delete them and convert again (the raw data is kept), or move them away')
    if force:
        for path in present:
            _remove(path)
    wanted = _normalised(params)
    root.mkdir(parents=True, exist_ok=True)
    write_json(marker, dict(command=command, params=wanted, complete=False))
    summary = run()
    write_json(marker, dict(command=command, params=wanted, complete=True, summary=summary))
    return summary
