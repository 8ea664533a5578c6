"""The demo's pre-training and VoteNet fine-tuning in 2 CPU processes (tools/dist_train.sh).

The configs are the demo's own (inherited unchanged, plus the audit import): no config names
a backend, the runner picks gloo without a GPU. What each rank writes and which teacher cache
it reads is recorded by tests/dist_write_audit.py (``custom_imports``).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]  # tests/
PRETRAIN_CFG = 'configs/demo/pretrain_pointnet2_synthetic.py'
VOTENET_CFG = 'configs/demo/votenet_synthetic_pretrained.py'
ITERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _dist_train(repo: Path, cfg: str, work: Path, audit: Path, *options: str) -> str:
    """bash tools/dist_train.sh CFG 2 with the audit module imported; returns the output.

    The audit module comes in through a config that inherits ``cfg`` unchanged and adds it to
    ``custom_imports`` (mmengine imports those when it reads the file, before --cfg-options).
    """
    audit.mkdir(parents=True, exist_ok=True)
    derived = audit / Path(cfg).name
    derived.write_text(f"_base_ = ['{repo / cfg}']\n"
                       "custom_imports = dict(imports=['concept_distill', 'dist_write_audit'], "
                       "allow_failed_imports=False)\n")
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1', CD_AUDIT_DIR=str(audit),
               PYTHONWARNINGS='ignore',
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get('PYTHONPATH', '')]))
    env.pop('CUDA_VISIBLE_DEVICES', None)
    start = time.perf_counter()
    run = subprocess.run(
        ['bash', str(repo / 'tools' / 'dist_train.sh'), str(derived), '2', '--work-dir',
         str(work), '--cfg-options', *options],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-8000:]
    print(f'{cfg}: 2 processes, {time.perf_counter() - start:.0f} s')
    return out


def _events(audit: Path, rank: int) -> list[dict]:
    path = audit / f'rank{rank}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _pth_writes(events: list[dict], folder: Path) -> Counter:
    """Files put in place under ``folder`` (by name), with how often."""
    return Counter(Path(e['path']).name for e in events
                   if e['kind'] == 'write' and Path(e['path']).parent == folder)


@pytest.mark.slow  # data, a cache and two 2-process runs (each start imports mmdet3d twice)
def test_pretraining_and_finetuning_in_two_processes(import_tool, repo_root: Path,
                                                     tmp_path: Path) -> None:
    data, cache = tmp_path / 'data', tmp_path / 'cache'
    import_tool('create_data').main([
        'synthetic', '--root-path', str(data), '--out-dir', str(data), '--num-scenes', '3',
        '--val-scenes', '1', '--num-frames', '4', '--points-per-scene', '20000', '--seed', '0'])
    roots = [f'{loader}.dataset.data_root={data}/'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    teacher = ['model.allow_random_teacher=True']  # the demo's random ViT-B-16
    import_tool('extract_teacher_features').main([
        PRETRAIN_CFG, '--cache-dir', str(cache), '--tokens', 'patch', '--cfg-options', *roots,
        *teacher, '--transform-options', f'LoadTeacherFeatures.cache_dir={cache}'])
    cache_files = {p: p.stat().st_mtime_ns for p in cache.rglob('*')}

    # Pre-training: a checkpoint (and its backbone export) at both iterations.
    work, audit = tmp_path / 'pretrain', tmp_path / 'audit_pretrain'
    out = _dist_train(
        repo_root, PRETRAIN_CFG, work, audit, *roots, *teacher, 'randomness.seed=0',
        f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
        'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=5',
        'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
        f'param_scheduler.1.end={ITERS}', f'param_scheduler.1.T_max={ITERS - 1}',
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
        'model.backbone.num_points=[256,128,64,32]',
        '--transform-options', f'LoadTeacherFeatures.cache_dir={cache}',
        'FrustumPointPairing.num_points=1024')
    assert "using the gloo backend instead of 'nccl'" in out
    rank0, rank1 = _events(audit, 0), _events(audit, 1)
    written = _pth_writes(rank0, work)
    checkpoints = {f'iter_{i}.pth' for i in range(1, ITERS + 1)}
    exports = {f'backbone_iter_{i}.pth' for i in range(1, ITERS + 1)}
    # each checkpoint and each export once, by rank 0; backbone_latest refreshed per export
    assert {k: v for k, v in written.items() if k != 'backbone_latest.pth'} == {
        name: 1 for name in checkpoints | exports}, written
    assert written['backbone_latest.pth'] == ITERS
    assert not _pth_writes(rank1, work) and not [e for e in rank1 if e['kind'] == 'write'
                                                and e['path'].endswith('.pth')]
    assert {p.name for p in work.glob('*.pth')} == checkpoints | exports | {
        'backbone_latest.pth'}
    # both ranks read their frames from the one cache, which no rank changed
    for events in (rank0, rank1):
        reads = [e for e in events if e['kind'] == 'cache_read']
        assert reads and {e['cache'] for e in reads} == {os.path.realpath(cache)}
    # the first 2 x 2 reads of a rank are its training frames
    train_frames = [{e['frame'] for e in [e for e in ev if e['kind'] == 'cache_read'][:4]}
                    for ev in (rank0, rank1)]
    assert train_frames[0].isdisjoint(train_frames[1])  # the sampler split the frames
    assert not [e for e in rank0 + rank1 if e['kind'] == 'write'
                and Path(e['path']).is_relative_to(cache)]
    assert {p: p.stat().st_mtime_ns for p in cache.rglob('*')} == cache_files

    # Fine-tuning VoteNet from the export, 2 processes, one epoch (train + val).
    work_vn, audit_vn = tmp_path / 'votenet', tmp_path / 'audit_votenet'
    out = _dist_train(
        repo_root, VOTENET_CFG, work_vn, audit_vn, 'randomness.seed=0',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        f'train_dataloader.dataset.dataset.data_root={data}/', 'train_dataloader.dataset.times=1',
        'train_dataloader.batch_size=1', f'val_dataloader.dataset.data_root={data}/',
        f'test_dataloader.dataset.data_root={data}/',
        f'model.backbone.init_cfg.checkpoint={work / "backbone_latest.pth"}',
        '--transform-options', 'PointSample.num_points=4096')
    assert re.search(r'PretrainedBackboneCheckHook: all \d+ backbone', out), out[-4000:]
    assert 'mAP_0.25' in out  # rank 0 evaluated the results of both ranks
    assert _pth_writes(_events(audit_vn, 0), work_vn) == Counter({'epoch_1.pth': 1})
    assert not _pth_writes(_events(audit_vn, 1), work_vn)
