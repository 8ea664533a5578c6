"""The demo's report: tables from the runs' logged scalars, figures, the exact commands."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- reading the runs' logs
def read_scalars(work_dir: Path) -> list[dict]:
    """Every record mmengine's LocalVisBackend wrote for the newest run in ``work_dir``."""
    files = sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir}')
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a logged scalar."""
    pts = [(r['step'], r[key]) for r in records if key in r and 'lr' in r]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def final_record_with(records: list[dict], key: str) -> dict:
    """The last record holding ``key`` (e.g. the evaluation at the end of training)."""
    hits = [r for r in records if key in r]
    if not hits:
        raise KeyError(f'no logged record has {key!r}')
    return hits[-1]


def detection_summary(metrics: dict, iou: str) -> dict:
    """mAP over the classes present in the evaluated scenes, plus mmdet3d's own mean.

    mmdet3d's IndoorMetric reports NaN AP for a class with no ground truth in the evaluated
    scenes and then a NaN mAP; the demo's few val scenes never hold all 18 classes, so the
    table averages over the classes that are present (and says how many).
    """
    aps = {k[:-len(f'_AP_{iou}')]: v for k, v in metrics.items() if k.endswith(f'_AP_{iou}')}
    present = [v for v in aps.values() if v is not None and not math.isnan(v)]
    return dict(map=float(np.mean(present)) if present else float('nan'),
                classes=len(present), total=len(aps), raw=metrics.get(f'mAP_{iou}'))


# ---------------------------------------------------------------- figures
def plot_curves(pre: list[dict], scratch: list[dict], pretrained: list[dict], path: Path) -> None:
    """Pre-training loss and alignment; VoteNet losses from scratch vs pre-trained."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    ax = axes[0]
    for key, style in (('loss', '-'), ('loss_global', '--'), ('loss_contrastive', ':'),
                       ('loss_set', '-.')):
        x, y = series(pre, key)
        if x:
            ax.plot(x, y, style, label=key)
    ax.set(title='Pre-training losses', xlabel='iteration')
    ax.legend()
    ax = axes[1]
    for key in ('align_cos', 'align_top1'):
        x, y = series(pre, key)
        if x:
            ax.plot(x, y, label=f'train batch {key}')
    ax.set(title='Student vs teacher alignment (train batches)', xlabel='iteration',
           ylim=(-0.05, 1.05))
    ax.legend()
    ax = axes[2]
    for name, recs in (('from scratch', scratch), ('pre-trained backbone', pretrained)):
        x, y = series(recs, 'loss')
        if x:
            ax.plot(x, y, label=name)
    ax.set(title='VoteNet fine-tuning loss', xlabel='iteration', yscale='log')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load_cfg(config: str, options: dict):
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / config))
    cfg.merge_from_dict(options)
    return cfg


def plot_pairing(data_root: str, path: Path) -> dict:
    """The first val frame with its paired points projected (tools/visualize_pairs.py's view)."""
    from concept_distill.visualization.pair_inspection import load_pair, save_pair_png

    pair = load_pair(data_root, 'scannet_infos_val.pkl', index=0,
                     data_prefix=dict(pts='points', img='', depth=''))
    save_pair_png(pair, path)
    return dict(frame=pair['frame_id'], error=pair['color_error'],
                shuffled=pair['shuffled_error'], points=len(pair['uv']))


def plot_concepts(cfg_path: str, options: dict, checkpoint: str, path: Path) -> None:
    """Which points each concept attends to, on one held-out frame (last cross-attention)."""
    import torch
    from mmdet3d.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate
    from PIL import Image

    from concept_distill.engine import load_checkpoint_file

    cfg = _load_cfg(cfg_path, options)
    model = MODELS.build(cfg.model)
    state = load_checkpoint_file(checkpoint, trusted=True)['state_dict']  # the demo's own run
    model.load_state_dict(state, strict=False)
    model.eval()
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    sample = dataset[0]
    batch = model.data_preprocessor(pseudo_collate([sample]), False)
    captured = {}
    extractor = model.concept_extractor
    last_attn = extractor.layers[-1].cross_attn
    handle = last_attn.register_forward_hook(
        lambda mod, args, kwargs, out: captured.update(args=args, kwargs=kwargs),
        with_kwargs=True)
    with torch.no_grad():
        tokens = model.token_adapter(model.backbone, batch['inputs'], batch['data_samples'])
        extractor(tokens)
        handle.remove()
        kwargs = dict(captured['kwargs'], need_weights=True, average_attn_weights=True)
        weights = last_attn(*captured['args'], **kwargs)[1][0]  # (K, N)
    xyz = tokens.xyz[0].numpy()
    owner = weights.argmax(0).numpy()
    k = weights.shape[0]
    info = dataset.get_data_info(0)
    img_path = info.get('img_path')
    show = min(4, k)
    strongest = np.argsort(-weights.max(1).values.numpy())[:show]
    fig, grid = plt.subplots(2, 3, figsize=(13, 8.5))
    axes = list(grid.flat)
    for ax in axes[2 + show:]:
        ax.axis('off')
    if img_path and os.path.exists(img_path):
        axes[0].imshow(Image.open(img_path))
    axes[0].set_title(f'frame {info.get("frame_id", "")}')
    axes[0].axis('off')
    cmap = plt.get_cmap('tab20', k)
    axes[1].scatter(xyz[:, 0], xyz[:, 1], c=owner, cmap=cmap, s=6, vmin=0, vmax=k - 1)
    axes[1].set_title(f'dominant concept per point token\n({k} concepts, top-down)')
    axes[1].set_aspect('equal')
    for ax, c in zip(axes[2:], strongest):
        w = weights[c].numpy()
        ax.scatter(xyz[:, 0], xyz[:, 1], c=w, cmap='magma', s=6)
        ax.set_title(f'concept {c}: attention')
        ax.set_aspect('equal')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _box_corners_xy(box) -> np.ndarray:
    """Top-down footprint (5, 2) of a DepthInstance3DBoxes row (closed polygon)."""
    corners = box.corners[0].numpy()  # (8, 3)
    bottom = corners[[0, 3, 7, 4, 0]] if corners.shape[0] == 8 else corners
    return bottom[:, :2]


def plot_boxes(cfg_path: str, runs: dict, options: dict, path: Path,
               score_thr: float = 0.3, top_k: int = 5) -> None:
    """Predicted vs ground-truth boxes, top-down, on one val scene, for each VoteNet run."""
    import torch
    from mmdet3d.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate

    from concept_distill.engine import load_checkpoint_file

    cfg = _load_cfg(cfg_path, options)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    sample = dataset[0]
    gt = dataset.get_ann_info(0)['gt_bboxes_3d']
    pts = sample['inputs']['points'].numpy()
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 6.5))
    for ax, (name, ckpt) in zip(np.atleast_1d(axes), runs.items()):
        model = MODELS.build(cfg.model)
        state = load_checkpoint_file(ckpt, trusted=True)['state_dict']  # the demo's own run
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            pred = model.test_step(pseudo_collate([sample]))[0].pred_instances_3d
        # Short demo runs score few boxes above the threshold: show at least the best few.
        order = pred.scores_3d.argsort(descending=True)
        keep = torch.zeros_like(pred.scores_3d, dtype=torch.bool)
        keep[order[:top_k]] = True
        keep |= pred.scores_3d > score_thr
        ax.scatter(pts[:, 0], pts[:, 1], s=0.3, c='0.7')
        for i in range(len(gt)):
            poly = _box_corners_xy(gt[i])
            ax.plot(poly[:, 0], poly[:, 1], 'g-', lw=2, label='ground truth' if i == 0 else None)
        boxes = pred.bboxes_3d[keep]
        for i in range(len(boxes)):
            poly = _box_corners_xy(boxes[i])
            ax.plot(poly[:, 0], poly[:, 1], 'r--', lw=1.2,
                    label=f'predicted (score > {score_thr} or top {top_k})' if i == 0 else None)
        ax.set_title(f'{name}: {int((pred.scores_3d > score_thr).sum())} boxes scored > '
                     f'{score_thr}; best score {float(pred.scores_3d.max()):.2f}')
        ax.set_aspect('equal')
        ax.legend(loc='upper right')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- the report
def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return 'n/a'
    return f'{x:.{digits}f}'


def _figure(report_dir: Path, name: str, fn, *args) -> tuple[str, str]:
    """Draw one figure; a failing figure is reported in the text, never fatal."""
    try:
        out = fn(*args, report_dir / name)
        return name, '' if not isinstance(out, dict) else json.dumps(out)
    except Exception as err:
        return '', f'{type(err).__name__}: {err}'


def data_description(sizes: dict, args) -> str:
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


def write_report(out: Path, stages: list, sizes: dict, args, total_seconds: float) -> str:
    """Write OUT/report/report.md and its PNGs; return the one-screen summary."""
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
                'val_dataloader.dataset.pipeline.4.cache_dir': sizes['cache'],
                'model.teacher.model_name': args.clip_model}
    if args.clip_weights:
        pre_opts['model.teacher.pretrained'] = str(Path(args.clip_weights).resolve())
    vn_opts = {'test_dataloader.dataset.data_root': sizes['data_root'] + '/'}

    plot_curves(pre, scratch, pretrained, report / 'curves.png')
    figures = [
        ('Loss and alignment curves', 'curves.png', ''),
        ('Point / image pairing (a held-out frame)',
         *_figure(report, 'pairing.png', plot_pairing, sizes['data_root'])),
        ('What the concepts attend to (held-out frame, last cross-attention layer)',
         *_figure(report, 'concepts.png', plot_concepts,
                  'configs/demo/pretrain_pointnet2_synthetic.py', pre_opts,
                  sizes['pretrain_checkpoint'])),
        ('VoteNet boxes, top-down (green: ground truth, red: predictions)',
         *_figure(report, 'boxes.png', plot_boxes, 'configs/demo/votenet_synthetic.py',
                  {'from scratch': _last_ckpt(out / 'votenet_scratch'),
                   'pre-trained backbone': _last_ckpt(out / 'votenet_pretrained')}, vn_opts)),
    ]
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
        'of the transfer, not a measurement of it.', '',
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
        f'  report: {report / "report.md"}',
        f'  figures: {", ".join(n for _, n, _ in figures if n)}', '=' * 72]
    return '\n'.join(summary)


def _last_ckpt(work_dir: Path) -> str:
    """The checkpoint named in mmengine's ``last_checkpoint`` file."""
    return (work_dir / 'last_checkpoint').read_text().strip()
