"""The demo's report (OUT/report/report.md): tables from the runs' logged scalars, figures, the
exact commands (``concept_distill.engine.demo`` writes it after its last stage)."""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmengine.config import Config

from concept_distill.evaluation.detection_summary import detection_summary
from concept_distill.evaluation.scalar_logs import final_record_with, read_scalars, series
from concept_distill.visualization.box_views import box_views_figure
from concept_distill.visualization.concept_attention import concept_attention_figure
from concept_distill.visualization.training_curves import plot_training_curves


def report_config(root: Path, config: str, cfg_options: Mapping[str, Any],
                  transform_options: Mapping[str, Any] | None = None) -> Config:
    """A demo config (relative to ``root``) with the overrides its stage's command had."""
    from concept_distill.engine.cli import apply_transform_options

    cfg = Config.fromfile(str(root / config))
    cfg.merge_from_dict(dict(cfg_options))
    return apply_transform_options(cfg, transform_options)


def _fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table; 'n/a' for a missing or NaN one."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return 'n/a'
    return f'{x:.{digits}f}'


def _figure(report_dir: Path, name: str, draw: Callable[[Path], Any]) -> tuple[str, str]:
    """``draw(path)`` one figure: (file name, note); a failing figure (its config included) is
    named in the text, never fatal."""
    try:
        out = draw(report_dir / name)
        return name, json.dumps(out) if isinstance(out, dict) else ''
    except Exception as err:  # a broken figure must not lose the run's tables
        return '', f'{type(err).__name__}: {err}'


def _pairing_figure(data_root: str, path: Path) -> dict:
    """The first val frame with its paired points projected (tools/visualize_pairs.py's view)."""
    from concept_distill.visualization.pair_inspection import load_pair, save_pair_png

    pair = load_pair(data_root, 'scannet_infos_val.pkl', index=0,
                     data_prefix=dict(pts='points', img='', depth=''))
    save_pair_png(pair, path)
    return dict(frame=pair['frame_id'], error=pair['color_error'],
                shuffled=pair['shuffled_error'], points=len(pair['uv']))


def last_checkpoint(work_dir: Path) -> str:
    """The checkpoint named in mmengine's ``last_checkpoint`` file."""
    return (work_dir / 'last_checkpoint').read_text().strip()


def data_description(sizes: Mapping[str, Any], args: argparse.Namespace) -> str:
    """One sentence on the data: the generated scenes, or what a given --data-root holds."""
    root = sizes['data_root']
    if not args.data_root:
        return (f'Data: synthetic ScanNet-format scenes ({sizes["num_scenes"]} scenes, '
                f'{sizes["val_scenes"]} held out, {sizes["num_frames"]} frames each) in '
                f'`{root}`.')
    import mmengine

    parts = []
    for split in ('train', 'val'):
        infos = mmengine.load(str(Path(root) / f'scannet_infos_{split}.pkl'))['data_list']
        frames = sum(len(i.get('frames', [])) for i in infos)
        parts.append(f'{len(infos)} {split} scenes ({frames} posed frames)')
    return f'Data: the ScanNet-format root `{root}`: {", ".join(parts)}.'


def transfer_section(sizes: Mapping[str, Any], args: argparse.Namespace,
                     report: Path) -> tuple[list[str], tuple[str, str, str] | None, str]:
    """The object track's part of the report: (markdown lines, its figure entry, a summary
    line); nothing when the demo ran no object track (``sizes`` has no ``transfer_json``)."""
    if 'transfer_json' not in sizes:
        return [], None, ''
    from concept_distill.visualization.transfer_plot import plot_transfer

    result = json.loads(Path(sizes['transfer_json']).read_text())
    rows, meta = result['rows'], result.get('meta', {})
    figure = ('Transfer to held-out objects: accuracy vs label fraction',
              *_figure(report, 'transfer.png', lambda p: plot_transfer(rows, p)))
    teachers = sorted({f'{r["backbone"]}: {r["teacher"]}' for r in rows})
    weights = ('--clip-weights /path/to/open_clip_ViT-B-16.bin' if not args.clip_weights
               else f'--clip-weights {args.clip_weights}')
    lines = [
        '## Object track: transfer to held-out objects', '',
        'Pre-training: the point-patch transformer on '
        f'{sizes["object_pretrain_per_class"]} synthetic objects per class '
        f'({len(sizes["object_classes"])} classes, {sizes["object_views"]} rendered view(s) '
        f'each), {sizes["object_pretrain_iters"]} iterations. Evaluation: '
        f'{meta.get("num_train", "?")} train / {meta.get("num_test", "?")} test objects of '
        'other instances (another data seed), never seen in pre-training. Linear probe: '
        'logistic regression on the frozen pooled features; fine-tuning: '
        f'{meta.get("finetune_steps", "?")} steps; scratch: the same backbone randomly '
        'initialised; teacher: the linear probe on the teacher\'s own embeddings of the '
        'objects\' views. Mean ± sample std over seeds '
        f'{", ".join(str(s) for s in meta.get("seeds", sizes["transfer_seeds"]))}.', '',
        Path(sizes['transfer_md']).read_text().strip(), '',
        'Teacher of each row: ' + '; '.join(teachers) + '.', '',
        f'Rerun with real CLIP weights: `python tools/demo.py {weights}` (both tracks), or '
        'the table alone: `python tools/transfer.py --out-dir work_dirs/transfer --export '
        f'{sizes["object_export"]} --objects-root {sizes["objects_heldout_root"]} --teacher '
        '/path/to/open_clip_ViT-B-16.bin --teacher-model ViT-B-16` (docs/transfer.md).', '']
    def cell(backbone: str, protocol: str) -> str:
        hit = [r for r in rows if r['backbone'] == backbone and r['protocol'] == protocol
               and r['label_fraction'] == max(sizes['transfer_fractions'])]
        return (f'{100 * hit[0]["mean"]:.1f}±{100 * hit[0]["std"]:.1f}%' if hit else 'n/a')
    summary = (f'  objects, linear probe (all labels)   pre-trained: '
               f'{cell("pretrained", "linear_probe")}   scratch: {cell("scratch", "linear_probe")}'
               f'   teacher: {cell("teacher", "linear_probe")}')
    return lines, figure, summary


def write_report(out: Path, stages: Sequence[Any], sizes: Mapping[str, Any],
                 args: argparse.Namespace, total_seconds: float, root: Path) -> str:
    """Write OUT/report/report.md and its PNGs; return the one-screen summary.

    ``stages`` are the demo's ``Stage`` objects (name, shell, seconds); ``sizes`` is what
    ``plan`` returned (sizes, paths, the two configs); ``root`` the repository root the stages
    ran in.
    """
    from mmdet3d.utils import register_all_modules

    import concept_distill  # noqa: F401  (registers the paired transforms)

    register_all_modules(init_default_scope=True)
    report = out / 'report'
    report.mkdir(parents=True, exist_ok=True)
    pre = read_scalars(out / 'pretrain')
    scratch = read_scalars(out / 'votenet_scratch')
    pretrained = read_scalars(out / 'votenet_pretrained')
    retrieval = final_record_with(pre, 'align/top1')
    det = {name: {iou: detection_summary(final_record_with(recs, 'mAP_0.25'), iou)
                  for iou in ('0.25', '0.50')}
           for name, recs in (('scratch', scratch), ('pretrained', pretrained))}
    _, pre_loss = series(pre, 'loss')
    random_teacher = not args.clip_weights
    pre_opts = {'train_dataloader.dataset.data_root': sizes['data_root'] + '/',
                'val_dataloader.dataset.data_root': sizes['data_root'] + '/',
                'model.teacher.model_name': args.clip_model}
    if args.clip_weights:
        pre_opts['model.teacher.pretrained'] = str(Path(args.clip_weights).resolve())
    else:
        pre_opts['model.allow_random_teacher'] = True  # as the pre-training run had it
    vn_opts = {'test_dataloader.dataset.data_root': sizes['data_root'] + '/'}

    plot_training_curves(pre, scratch, pretrained, report / 'curves.png')
    votenet_runs = {'from scratch': last_checkpoint(out / 'votenet_scratch'),
                    'pre-trained backbone': last_checkpoint(out / 'votenet_pretrained')}
    # trusted=True below: the checkpoints are this demo's own runs.
    figures = [
        ('Loss and alignment curves', 'curves.png', ''),
        ('Point / image pairing (a held-out frame)',
         *_figure(report, 'pairing.png', lambda p: _pairing_figure(sizes['data_root'], p))),
        ('What the concepts attend to (held-out frame, last cross-attention layer)',
         *_figure(report, 'concepts.png', lambda p: concept_attention_figure(
             report_config(root, sizes['pretrain_config'], pre_opts,
                           {'LoadTeacherFeatures.cache_dir': sizes['cache']}),
             sizes['pretrain_checkpoint'], p, trusted=True))),
        ('VoteNet boxes, top-down (green: ground truth, red: predictions)',
         *_figure(report, 'boxes.png', lambda p: box_views_figure(
             report_config(root, sizes['votenet_config'], vn_opts), votenet_runs, p,
             trusted=True))),
    ]
    object_lines, object_figure, object_summary = transfer_section(sizes, args, report)
    if object_figure is not None:
        figures.append(object_figure)
    chance = retrieval.get('align/chance', float('nan'))
    lines = [
        '# ConceptDistill demo report', '',
        f'Generated {datetime.datetime.now():%Y-%m-%d %H:%M} on {platform.node()} '
        f'({os.cpu_count()} CPU cores), in {total_seconds / 60:.1f} min.', '',
        ('**The CLIP teacher was randomly initialised** (no `--clip-weights`): the run '
         'demonstrates the pipeline only; its numbers say nothing about distilling CLIP.')
        if random_teacher else f'CLIP teacher: `{args.clip_model}` from `{args.clip_weights}`.',
        '',
        data_description(sizes, args), '',
        '## Pre-training (concept alignment)', '',
        '| iterations | first loss | last loss | held-out top-1 (student -> teacher) | chance | '
        'x chance | held-out mean cosine |', '|---|---|---|---|---|---|---|',
        f'| {sizes["pretrain_iters"]} | {_fmt(pre_loss[0] if pre_loss else None)} | '
        f'{_fmt(pre_loss[-1] if pre_loss else None)} | {_fmt(retrieval.get("align/top1"))} | '
        f'{_fmt(chance)} | {_fmt(retrieval.get("align/top1_over_chance"), 1)} | '
        f'{_fmt(retrieval.get("align/cos"))} |', '',
        'Retrieval: each held-out frame\'s pooled concept embedding must pick its own image\'s '
        'teacher embedding among the other candidates of its gallery.', '',
        '## VoteNet fine-tuning (same schedule, same seed)', '',
        '| backbone init | mAP@0.25 | mAP@0.5 | classes with GT in val | '
        'mmdet3d mAP@0.25 (all 18) |', '|---|---|---|---|---|',
    ]
    for name, label in (('scratch', 'random (scratch)'), ('pretrained', 'concept-distilled')):
        d = det[name]
        lines.append(f'| {label} | {_fmt(d["0.25"]["map"])} | {_fmt(d["0.50"]["map"])} | '
                     f'{d["0.25"]["classes"]}/{d["0.25"]["total"]} | {_fmt(d["0.25"]["raw"])} |')
    lines += [
        '', f'mAP is averaged over the classes that have ground truth in the evaluated scenes; '
        f'mmdet3d\'s own mean (last column) is NaN when any of the 18 classes is absent. '
        f'{sizes["votenet_epochs"]} epochs; such short runs on a few scenes are a smoke test '
        'of the transfer, not a measurement of it.', '', *object_lines,
        '## Figures', '']
    for title, name, note in figures:
        if name:
            lines += [f'### {title}', '', f'![{title}]({name})', '']
            if note:
                lines += [f'`{note}`', '']
        else:
            lines += [f'### {title}', '', f'(not drawn: {note})', '']
    lines += ['## Steps and the exact commands', '', '| step | seconds |', '|---|---|']
    lines += [f'| {s.name} | {s.seconds:.0f} |' for s in stages]
    lines += ['', 'Run from the repository root:', '', '```bash']
    lines += [s.shell for s in stages]
    lines += ['```', '']
    (report / 'report.md').write_text('\n'.join(lines))

    summary = [
        '', '=' * 72, 'ConceptDistill demo: done in '
        f'{total_seconds / 60:.1f} min' + ('   [RANDOM CLIP TEACHER]' if random_teacher else ''),
        f'  pre-training: loss {_fmt(pre_loss[0] if pre_loss else None)} -> '
        f'{_fmt(pre_loss[-1] if pre_loss else None)}; held-out retrieval top-1 '
        f'{_fmt(retrieval.get("align/top1"))} (chance {_fmt(chance)})',
        f'  VoteNet mAP@0.25 / @0.5   scratch: {_fmt(det["scratch"]["0.25"]["map"])} / '
        f'{_fmt(det["scratch"]["0.50"]["map"])}   pre-trained: '
        f'{_fmt(det["pretrained"]["0.25"]["map"])} / {_fmt(det["pretrained"]["0.50"]["map"])}',
        *([object_summary] if object_summary else []),
        f'  report: {report / "report.md"}',
        f'  figures: {", ".join(n for _, n, _ in figures if n)}', '=' * 72]
    return '\n'.join(summary)
