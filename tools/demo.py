"""The main job (`make demo`): concept-distillation pre-training and VoteNet transfer, end to end.

    python tools/demo.py [--out demo_output] [--scale 1.0] [--clip-weights PATH]
                         [--data-root DIR] [--force]

On a machine with no dataset and no CLIP weights it:
  1. generates synthetic ScanNet-format scenes (tools/create_data.py synthetic),
  2. caches the teacher's embeddings of every frame (tools/extract_teacher_features.py),
  3. pre-trains VoteNet's PointNet2SASSG with concept alignment (tools/train.py),
  4. exports the backbone (tools/export_backbone.py),
  5. fine-tunes mmdet3d's VoteNet from scratch and from that backbone, same schedule,
  6. evaluates both (mmdet3d's IndoorMetric, mAP@0.25 / mAP@0.5),
  7. writes OUT/report/report.md with tables, the exact commands and figures.
Every step is a real command of this repository; the report lists them.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PRETRAIN_CFG = 'configs/demo/pretrain_pointnet2_synthetic.py'
VOTENET_CFG = 'configs/demo/votenet_synthetic.py'
VOTENET_PRE_CFG = 'configs/demo/votenet_synthetic_pretrained.py'
# mmengine progress lines: "Epoch(train) [2][10/24] ... eta: 0:01:02 ... loss: 3.2"
_PROGRESS = re.compile(r'(Epoch|Iter)\((train|val|test)\)\s+(\[[^\]]*\])?\s*\[\s*(\d+)/(\d+)\]'
                       r'.*?(eta: \S+)?')
_TQDM = re.compile(r'\d+(/\d+)?\s*\w*\s*\[\d+:\d\d')


class Stage:
    """One step of the demo: a command, its log file, its wall time."""

    def __init__(self, name: str, cmd: list[str], log: Path) -> None:
        self.name, self.cmd, self.log = name, cmd, log
        self.seconds = 0.0

    @property
    def shell(self) -> str:
        """The command as a user would type it from the repository root."""
        return ' '.join(shlex.quote(c if c != PY else 'python') for c in self.cmd)


class _StatusLine:
    """The stage's one-line display: redrawn every second on a terminal (so a long iteration
    still shows time moving), printed once per change otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.start = time.time()
        self.text = ''
        self.drawn = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        if self.tty:
            self._ticker.start()

    def _draw(self) -> None:
        line = f'      {self.text or "starting"}  [{time.time() - self.start:5.0f}s]'
        if self.tty:
            # One terminal row, rewritten in place: a wrapped line would scroll every second.
            width = shutil.get_terminal_size().columns - 1
            print('\r' + line[:width] + '\x1b[K', end='', flush=True)
        else:
            print(line, flush=True)
        self.drawn = True

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._draw()

    def update(self, text: str) -> None:
        """Show `text` (a tool's latest progress) if it is new."""
        with self._lock:
            if text and text != self.text:
                self.text = text
                self._draw()

    def close(self) -> None:
        """Stop redrawing and end the line."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        if self.tty and self.drawn:
            print()


def run_stage(stage: Stage, index: int, total: int) -> None:
    """Run a stage, streaming a one-line progress display; stop the demo if it fails."""
    print(f'[{index}/{total}] {stage.name}\n      $ {stage.shell}\n      log: {stage.log}',
          flush=True)
    stage.log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONWARNINGS='ignore')
    status = _StatusLine()
    try:
        with open(stage.log, 'w') as log:
            proc = subprocess.Popen(stage.cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
            for line in proc.stdout:
                log.write(line)
                status.update(_status_line(line))
            proc.wait()
    finally:
        status.close()
    stage.seconds = time.time() - start
    if proc.returncode != 0:
        tail = ''.join(stage.log.read_text().splitlines(keepends=True)[-25:])
        raise SystemExit(f'\n{tail}\n[demo] step "{stage.name}" failed (exit '
                         f'{proc.returncode}); full log: {stage.log}')
    print(f'      done in {stage.seconds:.0f} s', flush=True)


def _status_line(line: str) -> str:
    """A short progress text from a tool's output line, or ''."""
    m = _PROGRESS.search(line)
    if m:
        eta = re.search(r'eta: (\S+)', line)
        loss = re.search(r'\sloss: ([\d.]+)', line)
        return (f'{m.group(1)}({m.group(2)}) {m.group(3) or ""}[{m.group(4)}/{m.group(5)}]'
                + (f' eta {eta.group(1)}' if eta else '')
                + (f' loss {loss.group(1)}' if loss else ''))
    if _TQDM.search(line):  # tqdm bars of create_data / extract_teacher_features
        return line.strip()[-90:]
    return ''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='demo_output', help='output folder (relative to the repo)')
    p.add_argument('--scale', type=float, default=1.0,
                   help='multiplies scenes, frames and training lengths (1.0: ~10 min on 2 cores)')
    p.add_argument('--clip-model', default='ViT-B-16')
    p.add_argument('--clip-weights', default=None,
                   help='local open_clip checkpoint of --clip-model (default: random init)')
    p.add_argument('--data-root', default=None,
                   help='a ScanNet root prepared by tools/create_data.py scannet (with frames); '
                   'default: generate synthetic scenes')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true',
                   help='replace an existing --out folder (never done silently)')
    args = p.parse_args(argv)
    # Bad input stops here, before anything is written.
    if not math.isfinite(args.scale) or args.scale <= 0:
        p.error(f'--scale must be a positive number (got {args.scale})')
    if args.clip_weights and not Path(args.clip_weights).is_file():
        p.error(f'--clip-weights: no such file: {args.clip_weights} (a local open_clip '
                f'checkpoint of {args.clip_model}; nothing is downloaded)')
    if args.data_root:
        for split in ('train', 'val'):
            info = Path(args.data_root) / f'scannet_infos_{split}.pkl'
            if not info.is_file():
                p.error(f'--data-root: {info} not found; prepare the root with '
                        f'`python tools/create_data.py scannet --root-path {args.data_root}`')
    return args


def pretrain_options(data_root: Path, cache: Path, iters: int, seed: int,
                     teacher_opts: list[str]) -> list[str]:
    """--cfg-options for configs/demo/pretrain_pointnet2_synthetic.py (fields, not variables:
    mmengine resolves a config's variables when it reads the file)."""
    warmup = max(1, min(20, iters // 5))
    opts = [f'randomness.seed={seed}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'default_hooks.checkpoint.interval={iters}',
            f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={iters}', f'param_scheduler.1.T_max={iters - warmup}']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={data_root}/',
                 f'{loader}.dataset.pipeline.4.cache_dir={cache}']
    return opts + teacher_opts


def votenet_options(data_root: Path, epochs: int, seed: int) -> list[str]:
    """--cfg-options for configs/demo/votenet_synthetic*.py."""
    return [f'randomness.seed={seed}', f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}',
            f'train_dataloader.dataset.dataset.data_root={data_root}/',
            f'val_dataloader.dataset.data_root={data_root}/',
            f'test_dataloader.dataset.data_root={data_root}/']


def plan(args: argparse.Namespace, out: Path) -> tuple[list[Stage], dict]:
    """The demo's commands, sized by --scale."""
    s = args.scale
    # Scale 1.0 takes ~10 min on 2 idle cores (the budget is 15); small scales keep a working
    # minimum (the smoke test runs 0.1: 3 scenes, 4 frames, 5 iterations, 1 VoteNet epoch).
    sizes = dict(num_scenes=max(3, round(10 * s)), val_scenes=max(1, round(3 * s)),
                 num_frames=max(4, round(12 * s)), points=40000,
                 pretrain_iters=max(5, round(50 * s)), votenet_epochs=max(1, round(4 * s)))
    data_root = Path(args.data_root).resolve() if args.data_root else out / 'data'
    cache = out / 'teacher_cache'
    teacher_opts = [f'model.teacher.model_name={args.clip_model}']
    if args.clip_weights:
        teacher_opts.append(f'model.teacher.pretrained={Path(args.clip_weights).resolve()}')
    pre_opts = pretrain_options(data_root, cache, sizes['pretrain_iters'], args.seed,
                                teacher_opts)
    vn_opts = votenet_options(data_root, sizes['votenet_epochs'], args.seed)
    pre_ckpt = out / 'pretrain' / f'iter_{sizes["pretrain_iters"]}.pth'
    backbone = out / 'pretrain' / 'backbone_exported.pth'
    stages = []
    if not args.data_root:
        stages.append(Stage('Generate synthetic ScanNet-format scenes', [
            PY, 'tools/create_data.py', 'synthetic', '--root-path', str(data_root),
            '--out-dir', str(data_root), '--num-scenes', str(sizes['num_scenes']),
            '--val-scenes', str(sizes['val_scenes']), '--num-frames', str(sizes['num_frames']),
            '--points-per-scene', str(sizes['points']), '--seed', str(args.seed)],
            out / 'logs' / 'data.log'))
    stages += [
        Stage("Cache the CLIP teacher's embeddings of every frame", [
            PY, 'tools/extract_teacher_features.py', PRETRAIN_CFG, '--cache-dir', str(cache),
            '--cfg-options', *pre_opts], out / 'logs' / 'teacher_cache.log'),
        Stage('Pre-train PointNet2SASSG with concept alignment', [
            PY, 'tools/train.py', PRETRAIN_CFG, '--work-dir', str(out / 'pretrain'),
            '--cfg-options', *pre_opts], out / 'logs' / 'pretrain.log'),
        Stage('Export the backbone for VoteNet', [
            PY, 'tools/export_backbone.py', str(pre_ckpt), str(backbone),
            '--target-config', VOTENET_CFG, '--trust-checkpoint'],
            out / 'logs' / 'export.log'),
        Stage('Fine-tune + evaluate VoteNet from scratch', [
            PY, 'tools/train.py', VOTENET_CFG, '--work-dir', str(out / 'votenet_scratch'),
            '--cfg-options', *vn_opts], out / 'logs' / 'votenet_scratch.log'),
        Stage('Fine-tune + evaluate VoteNet from the pre-trained backbone', [
            PY, 'tools/train.py', VOTENET_PRE_CFG, '--work-dir',
            str(out / 'votenet_pretrained'), '--cfg-options', *vn_opts,
            f'model.backbone.init_cfg.checkpoint={backbone}'],
            out / 'logs' / 'votenet_pretrained.log'),
    ]
    sizes.update(data_root=str(data_root), cache=str(cache), backbone=str(backbone),
                 pretrain_checkpoint=str(pre_ckpt))
    return stages, sizes


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    out = (ROOT / args.out).resolve() if not osp.isabs(args.out) else Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise SystemExit(f'[demo] {out} exists and is not empty; pass --force to replace '
                             'it or --out to choose another folder')
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.clip_weights:
        print('[demo] no --clip-weights: the CLIP teacher is RANDOMLY INITIALISED. The run '
              'demonstrates the pipeline only; its numbers say nothing about CLIP.')
    t0 = time.time()
    stages, sizes = plan(args, out)
    total = len(stages) + 1
    for i, stage in enumerate(stages, 1):
        run_stage(stage, i, total)
    report_log = out / 'logs' / 'report.log'
    print(f'[{total}/{total}] Write the report\n      log: {report_log}', flush=True)
    from demo_report import write_report

    # The report builds models and datasets in this process: their warnings and mmengine's
    # dataset tables go to the log, so the screen ends with the summary.
    with open(report_log, 'w') as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        summary = write_report(out, stages, sizes, args, time.time() - t0)
    print(summary)


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
