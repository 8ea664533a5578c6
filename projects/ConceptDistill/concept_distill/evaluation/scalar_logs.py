"""Reading the scalars mmengine's ``LocalVisBackend`` logged (``vis_data/scalars.json``)."""
from __future__ import annotations

import json
from pathlib import Path


def read_scalars(work_dir: str | Path) -> list[dict]:
    """Every record logged by the newest run in ``work_dir`` (one dict per logged step)."""
    files = sorted(Path(work_dir).glob('*/vis_data/scalars.json'),
                   key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir}')
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a training scalar (records with ``lr``: the training iterations)."""
    pts = [(r['step'], r[key]) for r in records if key in r and 'lr' in r]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def final_record_with(records: list[dict], key: str) -> dict:
    """The last record holding ``key`` (e.g. the evaluation at the end of training)."""
    hits = [r for r in records if key in r]
    if not hits:
        raise KeyError(f'no logged record has {key!r}')
    return hits[-1]
