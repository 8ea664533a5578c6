"""`run_transfer`: how much of the teacher's knowledge reached a pre-trained 3D backbone.

On held-out objects (instances never seen in pre-training) it measures, over seeds:

- ``linear_probe``: logistic regression on the frozen backbone's pooled features;
- ``finetune``: the classifier fine-tuned from the backbone, short schedule;

each at the label fractions (class-stratified subsets of the training objects), for the
pre-trained backbone and for a randomly initialised one of the same shape (``scratch``),
and the same linear probe on the teacher's own embeddings of the objects' views
(``teacher``, what there was to distil). A seed fixes the clouds' point sampling, the label
subsets (shared by all backbones), the scratch initialisation, the head and the batch order.
Accuracy is the overall accuracy on the test objects; std is the sample std over seeds.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from concept_distill.transfer.object_data import (
    MODELNET_DIR,
    VIEWS_SUBDIR,
    load_object_split,
    teacher_embeddings,
)
from concept_distill.transfer.protocols import (
    accuracy,
    build_classifier,
    finetune,
    label_subset,
    linear_probe,
    pooled_features,
    state_digest,
)

FRACTIONS = (0.01, 0.1, 1.0)
SEEDS = (0, 1, 2)
PROTOCOLS = ('linear_probe', 'finetune')
# The Done-when goal of issue 16, checked (not asserted) in every result.
GOAL_CELLS = (('linear_probe', 1.0), ('finetune', 0.01), ('finetune', 0.1))


class TransferError(ValueError):
    """Bad input to the transfer benchmark (names the file or argument)."""


def load_export(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """A backbone export -> (backbone config, state without the prefix, meta)."""
    from concept_distill.checkpoint.backbone_checkpoint import (
        extract_backbone_state,
        load_checkpoint_dict,
    )

    ckpt = load_checkpoint_dict(str(path))
    state = extract_backbone_state(ckpt, 'backbone.', str(path))
    meta = dict(ckpt.get('meta') or {})
    cfg = meta.get('backbone_cfg')
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise TransferError(f'{path}: its meta has no backbone_cfg (write it with '
                            f'tools/export_backbone.py or the BackboneExportHook)')
    return dict(cfg), state, meta


def _describe_teacher(key: Mapping | None) -> str:
    """One line naming a teacher from its cache key (or an export's teacher meta)."""
    if not key:
        return 'unknown teacher'
    digest = str(key.get('weights_digest') or '')
    name = key.get('model_name', '?')
    if digest.startswith('random-init'):
        return f'random {name} ({digest})'
    return f'{name} weights sha256 {digest[:12]}'


def _summary(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def run_transfer(export: str | os.PathLike, objects_root: str | os.PathLike,
                 teacher: Mapping | None = None, seeds: Sequence[int] = SEEDS,
                 fractions: Sequence[float] = FRACTIONS, num_points: int = 1024,
                 finetune_steps: int = 100, batch_size: int = 32, lr: float = 5e-4,
                 probe_c: float = 1.0, head_channels: Sequence[int] = (128,),
                 views_dir: str | os.PathLike | None = None,
                 provenance: Mapping | None = None, log=print) -> dict:
    """The transfer table of `export` on the downstream objects of `objects_root`.

    Args:
        export: backbone export (``backbone_latest.pth`` / ``tools/export_backbone.py``).
        objects_root: root with ``modelnet40_normal_resampled/`` (train / test splits) and,
            for the teacher row, ``ShapeNet55/shapenet_views/`` of the same objects.
        teacher: CLIPTeacher config of the teacher the export was distilled from (e.g.
            ``render_teacher.teacher_config(path)``); None: no teacher row. Its weights digest
            must equal the one in the export's meta.
        provenance: free-form record of where the data and export came from (seeds, roots),
            stored in the result.

    Returns a dict: ``rows`` (teacher, backbone, protocol, label_fraction, mean, std, seeds,
    values, num_labels, weights), ``goal`` (the issue's checks), ``meta``.
    """
    start = time.time()
    root = Path(objects_root)
    backbone_cfg, state, meta = load_export(export)
    train = load_object_split(root / MODELNET_DIR, 'train')
    test = load_object_split(root / MODELNET_DIR, 'test')
    num_classes = len(train.classes)
    seeds, fractions = [int(s) for s in seeds], [float(f) for f in fractions]
    if len(seeds) < 1 or not fractions:
        raise TransferError('run_transfer needs at least one seed and one label fraction')
    export_teacher = meta.get('teacher') if isinstance(meta.get('teacher'), Mapping) else None
    pre_teacher = _describe_teacher(export_teacher)

    teacher_feats, teacher_name, teacher_key = None, None, None
    if teacher is not None:
        from mmdet3d.registry import MODELS

        import concept_distill  # noqa: F401  (registers CLIPTeacher)

        t = MODELS.build(dict(dict(teacher), type='CLIPTeacher'))
        teacher_key = t.cache_key()
        if export_teacher and export_teacher.get('weights_digest') not in (
                None, teacher_key['weights_digest']):
            raise TransferError(
                f'{export} was distilled from teacher weights '
                f"{export_teacher.get('weights_digest')} but the teacher given for the "
                f"reference row has {teacher_key['weights_digest']}: the reference must be "
                f'the teacher that was distilled')
        teacher_name = _describe_teacher(teacher_key)
        vdir = Path(views_dir) if views_dir is not None else root / VIEWS_SUBDIR
        log(f'teacher embeddings of {len(train.shape_ids) + len(test.shape_ids)} objects')
        teacher_feats = (teacher_embeddings(t, vdir, train.shape_ids),
                         teacher_embeddings(t, vdir, test.shape_ids))
        del t

    values: dict[tuple[str, str, float], list[float]] = {}
    weights: dict[str, list[str]] = {'pretrained': [], 'scratch': []}
    test_y = torch.from_numpy(test.labels)
    for seed in seeds:
        train_pts, test_pts = train.sample(num_points, seed), test.sample(num_points, seed)
        subsets = {f: label_subset(train.labels, f, seed) for f in fractions}
        for kind in ('pretrained', 'scratch'):
            build = dict(backbone_cfg=backbone_cfg, num_classes=num_classes, seed=seed,
                         backbone_state=state if kind == 'pretrained' else None,
                         head_channels=head_channels)
            model = build_classifier(**build)
            weights[kind].append(state_digest(model.backbone.state_dict()))
            ftr, fte = pooled_features(model, train_pts), pooled_features(model, test_pts)
            for f, idx in subsets.items():
                acc = linear_probe(ftr[idx], train.labels[idx], fte, test.labels, probe_c)
                values.setdefault((kind, 'linear_probe', f), []).append(acc)
                t0 = time.time()
                model = build_classifier(**build)
                finetune(model, train_pts[idx], torch.from_numpy(train.labels[idx]), seed,
                         finetune_steps, batch_size, lr)
                acc_ft = accuracy(model, test_pts, test_y)
                values.setdefault((kind, 'finetune', f), []).append(acc_ft)
                log(f'seed {seed} {kind:10s} labels {f:g}: probe {acc:.3f} finetune '
                    f'{acc_ft:.3f} ({time.time() - t0:.0f} s)')
        if teacher_feats is not None:
            for f, idx in subsets.items():
                acc = linear_probe(teacher_feats[0][idx], train.labels[idx], teacher_feats[1],
                                   test.labels, probe_c)
                values.setdefault(('teacher', 'linear_probe', f), []).append(acc)

    if set(weights['pretrained']) & set(weights['scratch']):
        raise RuntimeError('a scratch run started from the pre-trained weights')
    rows = []
    for (kind, protocol, f), vals in values.items():
        mean, std = _summary(vals)
        rows.append(dict(
            teacher=pre_teacher if kind == 'pretrained' else
            (teacher_name if kind == 'teacher' else 'none'),
            backbone=kind, protocol=protocol, label_fraction=f, mean=mean, std=std,
            seeds=seeds, values=vals, num_labels=int(len(label_subset(train.labels, f,
                                                                      seeds[0]))),
            weights=sorted(set(weights[kind])) if kind in weights else
            [teacher_key['weights_digest']]))
    order = {'pretrained': 0, 'scratch': 1, 'teacher': 2}
    rows.sort(key=lambda r: (PROTOCOLS.index(r['protocol']), r['label_fraction'],
                             order[r['backbone']]))
    result = dict(rows=rows, goal=check_goal(rows), meta=dict(
        export=os.path.abspath(export), export_teacher=export_teacher,
        teacher=teacher_key, objects_root=str(root.resolve()), classes=list(train.classes),
        num_train=len(train.labels), num_test=len(test.labels), num_points=num_points,
        finetune_steps=finetune_steps, batch_size=batch_size, lr=lr, probe_c=probe_c,
        head_channels=list(head_channels), backbone_cfg=backbone_cfg, seeds=seeds,
        fractions=fractions, metric='overall_acc', std='sample std (ddof=1) over seeds',
        provenance=dict(provenance or {}), wall_s=round(time.time() - start, 1)))
    return result


def _cell(rows: Sequence[Mapping], backbone: str, protocol: str, fraction: float
          ) -> Mapping | None:
    return next((r for r in rows if r['backbone'] == backbone and r['protocol'] == protocol
                 and abs(r['label_fraction'] - fraction) < 1e-9), None)


def check_goal(rows: Sequence[Mapping]) -> dict:
    """The issue's goal: pre-trained beats scratch by > 2 std (the larger of the two) in the
    linear probe and at 1% and 10% fine-tuning; the probe closes >= half the scratch ->
    teacher gap. None where a cell is missing."""
    out: dict = {}
    for protocol, f in GOAL_CELLS:
        pre, scr = _cell(rows, 'pretrained', protocol, f), _cell(rows, 'scratch', protocol, f)
        key = f'{protocol}@{f:g}'
        if pre is None or scr is None:
            out[key] = None
            continue
        gain = pre['mean'] - scr['mean']
        margin = 2 * max(pre['std'], scr['std'])
        out[key] = dict(gain=gain, two_std=margin, met=bool(gain > margin))
    pre, scr = _cell(rows, 'pretrained', 'linear_probe', 1.0), \
        _cell(rows, 'scratch', 'linear_probe', 1.0)
    tea = _cell(rows, 'teacher', 'linear_probe', 1.0)
    if pre and scr and tea and tea['mean'] != scr['mean']:
        closed = (pre['mean'] - scr['mean']) / (tea['mean'] - scr['mean'])
        out['gap_closed'] = dict(fraction=closed, met=bool(closed >= 0.5))
    else:
        out['gap_closed'] = None
    return out


def format_table(result: Mapping) -> str:
    """The result as a markdown table (accuracy in %, mean +- std over the seeds)."""
    lines = ['| backbone | protocol | labels | overall acc. (%) | seeds | teacher |',
             '|---|---|---|---|---|---|']
    for r in result['rows']:
        lines.append(
            f"| {r['backbone']} | {r['protocol'].replace('_', ' ')} | "
            f"{r['label_fraction'] * 100:g}% ({r['num_labels']}) | "
            f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} | "
            f"{','.join(str(s) for s in r['seeds'])} | {r['teacher']} |")
    goal = result.get('goal') or {}
    notes = []
    for key, g in goal.items():
        if g is None:
            continue
        if key == 'gap_closed':
            notes.append(f"probe gap to the teacher closed: {100 * g['fraction']:.0f}% "
                         f"(goal >= 50%: {'met' if g['met'] else 'not met'})")
        else:
            notes.append(f"{key}: gain {100 * g['gain']:+.1f} vs 2 std {100 * g['two_std']:.1f}"
                         f" ({'met' if g['met'] else 'not met'})")
    if notes:
        lines += ['', 'Goal: ' + '; '.join(notes) + '.']
    return '\n'.join(lines) + '\n'


def write_table(result: Mapping, out_dir: str | os.PathLike, name: str = 'transfer'
                ) -> tuple[Path, Path]:
    """Write ``<name>.md`` (table) and ``<name>.json`` (everything) into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f'{name}.md', out / f'{name}.json'
    md.write_text(format_table(result))
    js.write_text(json.dumps(result, indent=1))
    return md, js


__all__ = ['FRACTIONS', 'GOAL_CELLS', 'PROTOCOLS', 'SEEDS', 'TransferError', 'check_goal',
           'format_table', 'load_export', 'run_transfer', 'write_table']
