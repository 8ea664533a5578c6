"""The fine-tuning matrix (tools/finetune_matrix.py): every downstream config x every backbone
init (each export, and scratch) x N seeds, each run through tools/train.py (or
tools/dist_train.sh), resumable per run, summarised in one results table (markdown + JSON).

Layout of ``work_dir``::

    runs/<config stem>/<init label>/seed<S>/   one mmengine work dir per run
        finetune_run.json                      completion marker, written last (atomically)
        finetune_stdout.log                    the run's output (appended on resume)
    results.md, results.json                   the table

A run whose marker exists is not rerun (its marker must describe the same run, otherwise the
work dir belongs to another matrix and nothing is overwritten); a run with a checkpoint but
no marker was interrupted and resumes with ``--resume``; any other run starts afresh.

Scratch runs use the *same* config as the pre-trained ones with the backbone's ``init_cfg``
set to None (``--cfg-options model.backbone.init_cfg=None``), so the two differ in the initial
backbone weights only; ``PretrainedBackboneCheckHook`` then logs that it has nothing to check.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from concept_distill.evaluation.detection_summary import detection_summary

MARKER = 'finetune_run.json'
STDOUT_LOG = 'finetune_stdout.log'
SCRATCH = 'scratch'
DEFAULT_INIT_KEY = 'model.backbone.init_cfg'


@dataclass(frozen=True)
class TaskMetrics:
    """How a task's result is read: its evaluator's primary and secondary scalar keys."""

    task: str
    primary: str
    secondary: tuple[str, ...] = ()


# The val_evaluator type of each downstream family -> the keys its table reports.
EVALUATOR_METRICS: dict[str, TaskMetrics] = {
    'IndoorMetric': TaskMetrics('3D detection', 'mAP_0.25', ('mAP_0.50',)),
    'SegMetric': TaskMetrics('semantic segmentation', 'miou', ('acc', 'acc_cls')),
    'ObjectClassificationMetric': TaskMetrics('classification', 'overall_acc',
                                              ('mean_class_acc',)),
    'PartSegMetric': TaskMetrics('part segmentation', 'instance_miou', ('class_miou',)),
}


class FinetuneMatrixError(RuntimeError):
    """A matrix cannot be planned or run (names the config, run or file)."""


@dataclass
class Run:
    """One fine-tuning run: a config, a backbone init (export or scratch), a seed."""

    config: str
    init: str                      # 'scratch' or the export's label
    checkpoint: str | None         # the export (None for scratch)
    seed: int
    work_dir: str
    cmd: list[str] = field(default_factory=list)

    def spec(self) -> dict:
        """What identifies the run (compared with an existing marker): the command's arguments
        after the script, so another Python or checkout path still finds its finished runs."""
        return dict(config=self.config, init=self.init, checkpoint=self.checkpoint,
                    seed=self.seed, args=self.cmd[2:])

    @property
    def marker(self) -> Path:
        """The completion marker's path."""
        return Path(self.work_dir) / MARKER

    def state(self) -> str:
        """'done' (marker), 'interrupted' (a checkpoint, no marker) or 'new'."""
        if self.marker.is_file():
            return 'done'
        if (Path(self.work_dir) / 'last_checkpoint').is_file():
            return 'interrupted'
        return 'new'


def _config_value(cfg: Mapping, dotted: str) -> Any:
    """``cfg['a']['b']`` for 'a.b', KeyError naming the full key when a part is missing."""
    node: Any = cfg  # an mmengine Config (not a Mapping) or a dict
    for part in dotted.split('.'):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError, IndexError):
            raise KeyError(dotted) from None
    return node


def _innermost_dataset(dataset: Mapping) -> Mapping:
    """The dataset a wrapper (RepeatDataset, ...) holds, or the dataset itself."""
    while isinstance(dataset.get('dataset'), Mapping):
        dataset = dataset['dataset']
    return dataset


def load_effective_config(config: str, cfg_options: Mapping[str, Any] | None = None):
    """The config as tools/train.py would see it after ``--cfg-options``."""
    from concept_distill.engine.cli import load_config

    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def task_metrics(cfg: Mapping, metric: str | None = None) -> TaskMetrics:
    """The metrics of a config's task, from its ``val_evaluator`` type (``metric`` overrides
    the primary key, e.g. for an evaluator not in EVALUATOR_METRICS)."""
    evaluator = cfg.get('val_evaluator')
    evaluators = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    types = [e.get('type') for e in evaluators if isinstance(e, Mapping)]
    for kind in types:
        if kind in EVALUATOR_METRICS:
            known = EVALUATOR_METRICS[kind]
            return known if metric is None else TaskMetrics(known.task, metric)
    if metric is None:
        raise FinetuneMatrixError(
            f'val_evaluator {types or evaluator!r} is not one of {sorted(EVALUATOR_METRICS)}: '
            'pass --metric KEY (a key of its logged validation results)')
    return TaskMetrics(str(types[0]) if types else 'unknown', metric)


def protocol_of(cfg: Mapping, gpus: int, select: str) -> dict:
    """The fine-tuning protocol a row was measured under (schedule, batch, data, selection)."""
    train_cfg = cfg.get('train_cfg') or {}
    loader = cfg.get('train_dataloader') or {}
    val = _innermost_dataset((cfg.get('val_dataloader') or {}).get('dataset') or {})
    length = (f'{train_cfg["max_epochs"]} epochs' if 'max_epochs' in train_cfg
              else f'{train_cfg.get("max_iters", "?")} iterations')
    return dict(schedule=length, batch=f'{loader.get("batch_size", "?")} x {max(gpus, 1)}',
                val_dataset=str(val.get('type', '?')), val_root=str(val.get('data_root', '?')),
                select=select)


def _train_length(cfg: Mapping) -> int | None:
    """The epoch the last validation of an epoch-based schedule is logged at (None for an
    iteration-based one: mmengine's LoggerHook may log its validations by epoch 0)."""
    return (cfg.get('train_cfg') or {}).get('max_epochs')


def parse_export(text: str) -> tuple[str, str]:
    """``LABEL=PATH`` or ``PATH`` (label: the file's stem) -> (label, absolute path)."""
    label, sep, path = text.partition('=')
    if not sep:
        label, path = Path(text).stem, text
    if not label or label == SCRATCH or '/' in label:
        raise FinetuneMatrixError(f'export {text!r}: the label must be a plain name other '
                                  f'than {SCRATCH!r} (write LABEL=PATH)')
    if not Path(path).is_file():
        raise FinetuneMatrixError(f'export {text!r}: no such file: {path}')
    return label, str(Path(path).resolve())


def _options_args(flag: str, options: Mapping[str, Any]) -> list[str]:
    """``--flag k=v ...`` in the form mmengine's DictAction reads back."""
    if not options:
        return []

    def text(v: Any) -> str:
        if isinstance(v, list):
            return '[' + ','.join(text(x) for x in v) + ']'
        if isinstance(v, tuple):
            return '(' + ','.join(text(x) for x in v) + (',)' if len(v) == 1 else ')')
        return 'None' if v is None else str(v)

    return [flag, *(f'{k}={text(v)}' for k, v in options.items())]


def train_command(config: str, work_dir: str, cfg_options: Mapping[str, Any],
                  transform_options: Mapping[str, Any], root: Path, gpus: int) -> list[str]:
    """tools/train.py (1 GPU or CPU) or tools/dist_train.sh (``gpus`` > 1) for one run."""
    tail = ['--work-dir', work_dir, *_options_args('--cfg-options', cfg_options),
            *_options_args('--transform-options', transform_options)]
    if gpus > 1:
        return ['bash', str(root / 'tools' / 'dist_train.sh'), config, str(gpus), *tail]
    return [sys.executable, str(root / 'tools' / 'train.py'), config, *tail]


def _config_path(config: str) -> str:
    """A config file's absolute path; a package config (``mmdet3d::...``) as written."""
    if '::' in config:
        return config
    if not Path(config).is_file():
        raise FinetuneMatrixError(f'config {config}: no such file')
    return str(Path(config).resolve())


def plan_matrix(configs: Sequence[str], exports: Sequence[str], seeds: Sequence[int],
                work_dir: str | Path, root: str | Path, *, scratch: bool = True,
                gpus: int = 1, cfg_options: Mapping[str, Any] | None = None,
                transform_options: Mapping[str, Any] | None = None,
                init_key: str = DEFAULT_INIT_KEY) -> list[Run]:
    """Every (config, init, seed) run with its command; checks each config has a Pretrained
    ``init_key`` to point at an export (the ``*_concept-distill_*`` configs do)."""
    if not configs:
        raise FinetuneMatrixError('no downstream config given')
    if not exports and not scratch:
        raise FinetuneMatrixError('nothing to run: no export and scratch disabled')
    if len(set(seeds)) != len(seeds) or not seeds:
        raise FinetuneMatrixError(f'seeds must be distinct and at least one (got {seeds})')
    inits = [(SCRATCH, None)] if scratch else []
    inits += [parse_export(e) for e in exports]
    labels = [label for label, _ in inits]
    if len(set(labels)) != len(labels):
        raise FinetuneMatrixError(f'two exports share a label ({labels}); write LABEL=PATH')
    work_dir, root = Path(work_dir).resolve(), Path(root).resolve()
    stems = [osp.splitext(osp.basename(c.split('::')[-1]))[0] for c in configs]
    if len(set(stems)) != len(stems):
        raise FinetuneMatrixError(f'two configs share a file name: {configs}')
    runs = []
    for config, stem in zip(configs, stems):
        config = _config_path(config)
        cfg = load_effective_config(config, cfg_options)
        try:
            init_cfg = _config_value(cfg, init_key)
        except KeyError:
            init_cfg = None
        if not isinstance(init_cfg, Mapping) or init_cfg.get('type') != 'Pretrained':
            raise FinetuneMatrixError(
                f'{config}: {init_key} is not a Pretrained init_cfg ({init_cfg!r}); give the '
                '*_concept-distill_* variant of the config, or --init-key')
        for label, checkpoint in inits:
            for seed in seeds:
                run_dir = str(work_dir / 'runs' / stem / label / f'seed{seed}')
                opts = {'randomness.seed': seed, **(cfg_options or {})}
                if checkpoint is None:
                    opts[init_key] = None
                else:
                    opts[f'{init_key}.checkpoint'] = checkpoint
                cmd = train_command(config, run_dir, opts, transform_options or {}, root, gpus)
                runs.append(Run(config, label, checkpoint, seed, run_dir, cmd))
    return runs


def _scalar_files(work_dir: Path) -> list[Path]:
    """mmengine's ``<timestamp>/vis_data/scalars.json`` files of a work dir, oldest first
    (a resumed run adds a new timestamp folder)."""
    return sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda p: p.parent.parent.name)


def _log_records(work_dir: Path) -> list[dict]:
    """Validation summaries parsed from mmengine's text logs (``<ts>/<ts>.log``), for a config
    that logs no scalars.json: ``Epoch(val) [E][n/n]  key: value ...`` (progress lines, with
    an ``eta:``, are skipped; an iteration-based summary carries no step)."""
    records = []
    for log in sorted(work_dir.glob('*/*.log'), key=lambda p: p.parent.name):
        for line in log.read_text(errors='replace').splitlines():
            m = re.search(r'(Epoch|Iter)\(val\)\s+(\[(\d+)\])?(\[\s*\d+/\d+\])?\s+(.*)$', line)
            if not m or 'eta:' in line:
                continue
            rec: dict[str, Any] = {'step': int(m.group(3))} if m.group(3) else {}
            for key, value in re.findall(r'([\w./@-]+): (-?[\d.]+(?:e-?\d+)?|nan)', m.group(5)):
                rec[key] = float(value)
            records.append(rec)
    return records


def read_final_metrics(work_dir: str | Path, keys: Sequence[str], step: int | None,
                       select: str = 'last') -> dict:
    """The run's validation record (``select``: 'last' or 'best' by ``keys[0]``) from
    scalars.json (or the text log), as {key: value} for every scalar it holds.

    'last' must be the validation at the end of training (``step``): a run that stopped
    before it has no final result.
    """
    work_dir = Path(work_dir)
    records = [json.loads(line) for f in _scalar_files(work_dir)
               for line in f.read_text().splitlines() if line.strip()]
    records = [r for r in records if keys[0] in r] or [r for r in _log_records(work_dir)
                                                        if keys[0] in r]
    if not records:
        raise FinetuneMatrixError(f'{work_dir}: no logged validation holds {keys[0]!r} '
                                  '(in */vis_data/scalars.json or the text log)')
    final = records[-1]
    if (select == 'last' and step is not None and 'step' in final
            and final['step'] != step):
        raise FinetuneMatrixError(f'{work_dir}: the last validation with {keys[0]!r} is at step '
                                  f'{final.get("step")}, not at the end of training ({step})')
    if select == 'best':
        final = max(records, key=lambda r: -math.inf if _nan(r[keys[0]]) else r[keys[0]])
    return {k: float(v) for k, v in final.items() if isinstance(v, (int, float))}


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def result_values(record: Mapping[str, float], metrics: TaskMetrics) -> dict[str, float]:
    """The table's values from a validation record. Detection mAP is averaged over the classes
    with ground truth in the evaluated scenes (``detection_summary``; equal to mmdet3d's mean
    when every class is present)."""
    out = {}
    for key in (metrics.primary, *metrics.secondary):
        if key.startswith('mAP_'):
            out[key] = detection_summary(record, key[len('mAP_'):])['map']
        elif key in record:
            out[key] = float(record[key])
    return out


def _atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename (a reader never sees half a file)."""
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def execute_run(run: Run, cwd: Path, log: Callable[[str], None] = print) -> dict:
    """Run one fine-tuning (resuming an interrupted one); return its marker's contents.

    The marker is written only after the run succeeded and its final metrics were read.
    """
    wd = Path(run.work_dir)
    state = run.state()
    if state == 'done':
        marker = json.loads(run.marker.read_text())
        if marker.get('spec') != run.spec():
            raise FinetuneMatrixError(
                f'{run.marker} describes another run ({marker.get("spec")}); this matrix would '
                f'run {run.spec()}. Use another --work-dir (nothing is overwritten).')
        log(f'[finetune-matrix] done already: {wd}')
        return marker
    cmd = run.cmd + (['--resume'] if state == 'interrupted' else [])
    wd.mkdir(parents=True, exist_ok=True)
    log(f'[finetune-matrix] {"resume" if state == "interrupted" else "run"}: '
        f'{" ".join(shlex.quote(c) for c in cmd)}')
    start = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(wd / STDOUT_LOG, 'a') as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = ''.join((wd / STDOUT_LOG).read_text(errors='replace')
                       .splitlines(keepends=True)[-20:])
        raise FinetuneMatrixError(f'{tail}\nrun failed (exit {proc.returncode}): {wd}; log: '
                                  f'{wd / STDOUT_LOG}; rerun the matrix to resume it')
    return dict(spec=run.spec(), seconds=time.time() - start, resumed=state == 'interrupted')


def finish_run(run: Run, marker: dict, metrics: TaskMetrics, step: int | None,
               select: str) -> dict:
    """Read a finished run's metrics and write its marker (last)."""
    if 'values' not in marker:
        record = read_final_metrics(run.work_dir, (metrics.primary, *metrics.secondary),
                                    step, select)
        marker = dict(marker, record=record, values=result_values(record, metrics),
                      select=select)
        _atomic_write_json(run.marker, marker)
    return marker


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for one value) over the seeds."""
    arr = np.asarray([v for v in values if not _nan(v)], dtype=float)
    if arr.size == 0:
        return float('nan'), float('nan')
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else float('nan')


def summarize(runs: Sequence[Run], markers: Sequence[dict], tasks: Mapping[str, TaskMetrics],
              protocols: Mapping[str, dict]) -> dict:
    """The results table as data: one row per (config, init), mean / std / values per seed,
    the difference to the config's scratch row, and the protocol."""
    rows: dict[tuple[str, str], dict] = {}
    for run, marker in zip(runs, markers):
        metrics = tasks[run.config]
        row = rows.setdefault((run.config, run.init), dict(
            config=run.config, config_name=osp.splitext(osp.basename(run.config))[0],
            task=metrics.task, init=run.init, checkpoint=run.checkpoint,
            metrics=[metrics.primary, *metrics.secondary], seeds=[], per_seed={},
            protocol=protocols[run.config]))
        row['seeds'].append(run.seed)
        for key, value in marker['values'].items():
            row['per_seed'].setdefault(key, []).append(value)
    for row in rows.values():
        row['mean'], row['std'] = {}, {}
        for key, values in row['per_seed'].items():
            row['mean'][key], row['std'][key] = mean_std(values)
    for row in rows.values():
        base = rows.get((row['config'], SCRATCH))
        row['delta_vs_scratch'] = (None if base is None or row['init'] == SCRATCH else
                                   {k: row['mean'][k] - base['mean'].get(k, float('nan'))
                                    for k in row['mean']})
    return dict(std='sample standard deviation over seeds (ddof=1)',
                scratch=f'the same config with {DEFAULT_INIT_KEY}=None',
                rows=list(rows.values()))


def _fmt(x: float | None, digits: int = 3) -> str:
    return 'n/a' if _nan(x) else f'{x:.{digits}f}'


def markdown_table(table: Mapping) -> str:
    """The table in docs/model_zoo.md's results format."""
    lines = ['| task | config | backbone init | metric | mean ± std | Δ vs scratch | seeds | '
             'per seed | protocol |', '|---|---|---|---|---|---|---|---|---|']
    for row in table['rows']:
        p = row['protocol']
        protocol = (f'{p["schedule"]}, batch {p["batch"]}, {p["select"]} val on '
                    f'{p["val_dataset"]}')
        for i, key in enumerate(row['metrics']):
            if key not in row['mean']:
                continue
            delta = row['delta_vs_scratch']
            lines.append(
                f'| {row["task"] if i == 0 else ""} | `{row["config_name"]}` | {row["init"]} | '
                f'{key} | {_fmt(row["mean"][key])} ± {_fmt(row["std"][key])} | '
                f'{"" if delta is None else f"{delta[key]:+.3f}"} | {len(row["seeds"])} | '
                f'{", ".join(_fmt(v) for v in row["per_seed"][key])} | {protocol} |')
    return '\n'.join(lines) + '\n'


def write_tables(table: Mapping, work_dir: str | Path) -> tuple[Path, Path]:
    """``results.md`` and ``results.json`` in ``work_dir``."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    md, js = work_dir / 'results.md', work_dir / 'results.json'
    md.write_text(markdown_table(table))
    _atomic_write_json(js, table)
    return md, js


def run_matrix(runs: Sequence[Run], work_dir: str | Path, *, gpus: int = 1,
               cfg_options: Mapping[str, Any] | None = None, metric: str | None = None,
               select: str = 'last', log: Callable[[str], None] = print) -> dict:
    """Run (or skip, or resume) every run in order, then write and return the table."""
    if select not in ('last', 'best'):
        raise FinetuneMatrixError(f'select must be last or best (got {select!r})')
    tasks, protocols, steps = {}, {}, {}
    for config in dict.fromkeys(r.config for r in runs):
        cfg = load_effective_config(config, cfg_options)
        tasks[config] = task_metrics(cfg, metric)
        protocols[config] = protocol_of(cfg, gpus, select)
        steps[config] = _train_length(cfg)
    cwd = Path.cwd()
    markers = []
    for i, run in enumerate(runs, 1):
        log(f'[finetune-matrix] {i}/{len(runs)} {Path(run.config).name} init={run.init} '
            f'seed={run.seed}')
        marker = execute_run(run, cwd, log)
        markers.append(finish_run(run, marker, tasks[run.config], steps[run.config], select))
    table = summarize(runs, markers, tasks, protocols)
    table['runs'] = [dict(asdict(r), state='done') for r in runs]
    write_tables(table, work_dir)
    return table
