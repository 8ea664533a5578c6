"""The main job (`make demo`, tools/demo.py): concept-distillation pre-training and VoteNet
transfer, end to end, as a sequence of the repository's own commands.

On a machine with no dataset and no CLIP weights it:
  1. generates synthetic ScanNet-format scenes (tools/create_data.py synthetic),
  2. caches the teacher's embeddings of every frame (tools/extract_teacher_features.py),
  3. pre-trains VoteNet's PointNet2SASSG with concept alignment (tools/train.py),
  4. exports the backbone (tools/export_backbone.py),
  5. fine-tunes mmdet3d's VoteNet from scratch and from that backbone, same schedule,
  6. evaluates both (mmdet3d's IndoorMetric, mAP@0.25 / mAP@0.5),
  7. the object track (concept_distill.engine.demo_objects): synthetic objects with views,
     held-out objects, teacher cache, object pre-training, export, and the transfer table
     (linear probe / few-label fine-tuning, pre-trained vs scratch, over seeds),
  8. writes OUT/report/report.md with tables, the exact commands and figures
     (concept_distill.visualization.demo_report).
Every step is a real command of this repository, run from the repository root; the report
lists them.
"""
from __future__ import annotations

import argparse
import contextlib
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
        """``cmd`` runs from the repository root; its output goes to ``log``."""
        self.name, self.cmd, self.log = name, cmd, log
        self.seconds = 0.0

    @property
    def shell(self) -> str:
        """The command as a user would type it from the repository root."""
        return ' '.join(shlex.quote(c if c != PY else 'python') for c in self.cmd)


class StatusLine:
    """The stage's one-line display: redrawn every second on a terminal (so a long iteration
    still shows time moving), printed once per change otherwise (logs, CI)."""

    def __init__(self) -> None:
        """Start the once-a-second redraw on a terminal."""
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
        """Print the line (in place on a terminal)."""
        line = f'      {self.text or "starting"}  [{time.time() - self.start:5.0f}s]'
        if self.tty:
            # One terminal row, rewritten in place: a wrapped line would scroll every second.
            width = shutil.get_terminal_size().columns - 1
            print('\r' + line[:width] + '\x1b[K', end='', flush=True)
        else:
            print(line, flush=True)
        self.drawn = True

    def _tick(self) -> None:
        """Redraw every second until closed."""
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


def run_stage(stage: Stage, index: int, total: int, root: Path) -> None:
    """Run a stage from ``root``, streaming a one-line progress display; stop the demo (with
    the log's tail) if it fails."""
    print(f'[{index}/{total}] {stage.name}\n      $ {stage.shell}\n      log: {stage.log}',
          flush=True)
    stage.log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONWARNINGS='ignore')
    status = StatusLine()
    try:
        with open(stage.log, 'w') as log:
            proc = subprocess.Popen(stage.cmd, cwd=root, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
            for line in proc.stdout:
                log.write(line)
                status.update(status_line(line))
            proc.wait()
    finally:
        status.close()
    stage.seconds = time.time() - start
    if proc.returncode != 0:
        tail = ''.join(stage.log.read_text().splitlines(keepends=True)[-25:])
        raise SystemExit(f'\n{tail}\n[demo] step "{stage.name}" failed (exit '
                         f'{proc.returncode}); full log: {stage.log}')
    print(f'      done in {stage.seconds:.0f} s', flush=True)


def status_line(line: str) -> str:
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


def pretrain_options(data_root: Path, iters: int, seed: int,
                     teacher_opts: list[str]) -> list[str]:
    """--cfg-options for configs/demo/pretrain_pointnet2_synthetic.py (fields, not variables:
    mmengine resolves a config's variables when it reads the file)."""
    warmup = max(1, min(20, iters // 5))
    opts = [f'randomness.seed={seed}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'default_hooks.checkpoint.interval={iters}',
            f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={iters}', f'param_scheduler.1.T_max={iters - warmup}']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts.append(f'{loader}.dataset.data_root={data_root}/')
    return opts + teacher_opts


def pretrain_transform_options(cache: Path) -> list[str]:
    """--transform-options for the pre-training config: the teacher cache, named by the
    transform's type (its position in the pipelines may change)."""
    return [f'LoadTeacherFeatures.cache_dir={cache}']


def votenet_options(data_root: Path, epochs: int, seed: int) -> list[str]:
    """--cfg-options for configs/demo/votenet_synthetic*.py."""
    return [f'randomness.seed={seed}', f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}',
            f'train_dataloader.dataset.dataset.data_root={data_root}/',
            f'val_dataloader.dataset.data_root={data_root}/',
            f'test_dataloader.dataset.data_root={data_root}/']


def plan(args: argparse.Namespace, out: Path) -> tuple[list[Stage], dict]:
    """The demo's commands (run from the repository root), sized by ``args.scale``, and
    what they use (sizes, paths, configs)."""
    s = args.scale
    # Scale 1.0 took 16.6 min on 2 idle cores with 50 iterations (budget: about 15), so 40;
    # minimum (the smoke test runs 0.1: 3 scenes, 4 frames, 5 iterations, 1 VoteNet epoch).
    sizes = dict(num_scenes=max(3, round(10 * s)), val_scenes=max(1, round(3 * s)),
                 num_frames=max(4, round(12 * s)), points=40000,
                 pretrain_iters=max(5, round(40 * s)), votenet_epochs=max(1, round(4 * s)))
    data_root = Path(args.data_root).resolve() if args.data_root else out / 'data'
    cache = out / 'teacher_cache'
    teacher_opts = [f'model.teacher.model_name={args.clip_model}']
    if args.clip_weights:
        teacher_opts.append(f'model.teacher.pretrained={Path(args.clip_weights).resolve()}')
    else:
        # The distiller refuses a random teacher unless asked: the demo, without weights,
        # runs one on purpose (and says so on screen and in the report).
        teacher_opts.append('model.allow_random_teacher=True')
    pre_opts = pretrain_options(data_root, sizes['pretrain_iters'], args.seed, teacher_opts)
    pre_transforms = ['--transform-options', *pretrain_transform_options(cache)]
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
            '--tokens', 'patch', '--cfg-options', *pre_opts, *pre_transforms],
            out / 'logs' / 'teacher_cache.log'),
        Stage('Pre-train PointNet2SASSG with concept alignment', [
            PY, 'tools/train.py', PRETRAIN_CFG, '--work-dir', str(out / 'pretrain'),
            '--cfg-options', *pre_opts, *pre_transforms], out / 'logs' / 'pretrain.log'),
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
                 pretrain_checkpoint=str(pre_ckpt), pretrain_config=PRETRAIN_CFG,
                 votenet_config=VOTENET_CFG)
    if getattr(args, 'object_track', True):
        # Imported here: demo_objects reuses this module's option helpers.
        from concept_distill.engine.demo_objects import object_track

        object_stages, object_info = object_track(args, out, Stage, PY)
        stages += object_stages
        sizes.update(object_info)
    return stages, sizes


def run_demo(args: argparse.Namespace, root: str | Path) -> None:
    """Run every stage from the repository ``root``, then write the report.

    ``args`` are tools/demo.py's (already checked): out, scale, clip_model, clip_weights,
    data_root, seed, force. An existing non-empty ``out`` is replaced only with ``force``.
    """
    root = Path(root).resolve()
    out = (root / args.out).resolve() if not osp.isabs(args.out) else Path(args.out)
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
        run_stage(stage, i, total, root)
    report_log = out / 'logs' / 'report.log'
    print(f'[{total}/{total}] Write the report\n      log: {report_log}', flush=True)
    from concept_distill.visualization.demo_report import write_report

    # The report builds models and datasets in this process: their warnings and mmengine's
    # dataset tables go to the log, so the screen ends with the summary.
    with open(report_log, 'w') as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        summary = write_report(out, stages, sizes, args, time.time() - t0, root)
    print(summary)


