"""Multi-process training on CPU (torchrun + gloo through tools/dist_train.sh) and CPU AMP.

The toy components below are imported by the torchrun processes too (``custom_imports`` of
this module, with this folder on ``PYTHONPATH``), so both sides train the same model.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from mmdet3d.registry import DATASETS, HOOKS, MODELS
from mmengine.config import Config
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper

from concept_distill.engine.amp import CPUAmpOptimWrapper, enable_amp
from concept_distill.engine.distributed import (
    cpu_dist_cfg,
    cpu_model_wrapper_cfg,
    init_cpu_process_group,
)

HERE = Path(__file__).resolve().parent
N_SAMPLES = 32


@MODELS.register_module(force=True)
class _DistToyModel(BaseModel):
    """A two-layer regressor that records the dtype its hidden layer computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 16)
        self.fc2 = torch.nn.Linear(16, 1)
        self.hidden_dtype = ''

    def forward(self, inputs, data_samples=None, mode='tensor'):
        hidden = self.fc1(inputs)
        self.hidden_dtype = str(hidden.dtype)  # bfloat16 when CPU autocast is active
        pred = self.fc2(torch.relu(hidden)).squeeze(-1).float()
        if mode == 'loss':
            return dict(loss=((pred - data_samples[:, 0]) ** 2).mean())
        return list(pred)


@DATASETS.register_module(force=True)
class _DistToyDataset(torch.utils.data.Dataset):
    """Deterministic data; each target carries its sample index so ranks can be told apart."""

    metainfo = dict(name='dist_toy')

    def __init__(self, n: int = N_SAMPLES) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=self.x[i], data_samples=torch.stack([self.y[i], torch.tensor(i)]))


@HOOKS.register_module(force=True)
class _DistRecordHook(Hook):
    """Write what this rank saw to ``<work_dir>/record_rank<r>.json`` at the end of training."""

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.losses: list[float] = []
        self.saves = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.indices += [int(i) for i in data_batch['data_samples'][:, 1]]
        self.losses.append(float(torch.as_tensor(outputs['loss']).detach()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.saves += 1  # called from inside Runner.save_checkpoint: rank 0 only

    def after_train(self, runner) -> None:
        rank, world_size = get_dist_info()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        record = dict(
            rank=rank, world_size=world_size, iters=runner.iter, indices=self.indices,
            losses=self.losses, saves=self.saves, hidden_dtype=model.hidden_dtype,
            wrapper=type(runner.model).__name__,
            device_ids=getattr(runner.model, 'device_ids', 'unwrapped'),
            optim_wrapper=type(runner.optim_wrapper).__name__,
            backend=(torch.distributed.get_backend() if world_size > 1 else None),
            params={k: v.detach().double().flatten().tolist()
                    for k, v in model.state_dict().items()})
        (Path(runner.work_dir) / f'record_rank{rank}.json').write_text(json.dumps(record))


CONFIG = """
default_scope = 'mmdet3d'
runner_type = 'ConceptDistillRunner'
custom_imports = dict(imports=['test_distributed'], allow_failed_imports=False)
model = dict(type='_DistToyModel')
train_dataloader = dict(batch_size={batch}, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=False),
                        collate_fn=dict(type='default_collate'),
                        dataset=dict(type='_DistToyDataset'))
train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters})
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.05))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval={iters}, by_epoch=False),
                     logger=dict(type='LoggerHook', interval=1))
custom_hooks = [dict(type='_DistRecordHook')]
randomness = dict(seed=0)
log_level = 'WARNING'
"""


def _write_config(tmp_path: Path, name: str, batch: int, iters: int) -> Path:
    cfg = tmp_path / f'{name}.py'
    cfg.write_text(CONFIG.format(batch=batch, iters=iters))
    return cfg


def _records(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(work.glob('record_rank*.json'))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture()
def train_cli(import_tool):
    """tools/train.py as a module (its main() is the CLI)."""
    return import_tool('train')


def test_cpu_dist_cfg_and_wrapper_cfg() -> None:
    """On CPU an accelerator backend becomes gloo; DDP gets device_ids=None, others untouched."""
    assert cpu_dist_cfg(None)['backend'] == 'gloo'  # mmengine's default is nccl
    assert cpu_dist_cfg(dict(backend='nccl', timeout=60)) == dict(backend='gloo', timeout=60)
    assert cpu_dist_cfg(dict(backend='gloo'))['backend'] == 'gloo'
    cfg = cpu_model_wrapper_cfg(None, find_unused_parameters=True)
    assert cfg['device_ids'] is None and cfg['find_unused_parameters'] is True
    assert cfg['type'] == 'MMDistributedDataParallel' and cfg['broadcast_buffers'] is False
    kept = cpu_model_wrapper_cfg(dict(type='MMDistributedDataParallel', device_ids=[3]), False)
    assert kept['device_ids'] == [3]
    other = cpu_model_wrapper_cfg(dict(type='MMFullyShardedDataParallel'), False)
    assert 'device_ids' not in other
    with pytest.raises(NotImplementedError, match='torchrun'):
        init_cpu_process_group('slurm', None)  # mmengine's slurm set-up is CUDA-only


def test_enable_amp_by_device() -> None:
    """--amp: AmpOptimWrapper with a dynamic scale on a GPU (as before), bf16 wrapper on CPU."""
    def cfg(**wrapper) -> Config:
        return Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1), **wrapper)))

    gpu = enable_amp(cfg(type='OptimWrapper'), device='cuda').optim_wrapper
    assert gpu.type == 'AmpOptimWrapper' and gpu.loss_scale == 'dynamic'
    cpu = enable_amp(cfg(type='OptimWrapper'), device='cpu').optim_wrapper
    assert cpu.type == 'CPUAmpOptimWrapper' and cpu.dtype == 'bfloat16'
    converted = enable_amp(cfg(type='AmpOptimWrapper', loss_scale=512.0, dtype='float16'),
                           device='cpu').optim_wrapper
    assert converted.type == 'CPUAmpOptimWrapper' and converted.dtype == 'bfloat16'
    assert 'loss_scale' not in converted
    # a GPU AMP checkpoint resumes on CPU: the loss-scaler state is ignored
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD([torch.nn.Parameter(
        torch.zeros(2))], lr=0.1))
    state = wrapper.state_dict()
    state['loss_scaler'] = dict(scale=1024.0)
    wrapper.load_state_dict(state)


def test_amp_on_cpu_trains_in_bfloat16(train_cli, tmp_path: Path) -> None:
    """tools/train.py --amp on CPU: bf16 autocast in the forward, finite losses near fp32's."""
    cfg = _write_config(tmp_path, 'toy', batch=8, iters=4)
    train_cli.main([str(cfg), '--work-dir', str(tmp_path / 'fp32')])
    train_cli.main([str(cfg), '--work-dir', str(tmp_path / 'amp'), '--amp'])
    (fp32,), (amp,) = _records(tmp_path / 'fp32'), _records(tmp_path / 'amp')
    assert fp32['optim_wrapper'] == 'OptimWrapper' and fp32['hidden_dtype'] == 'torch.float32'
    assert amp['optim_wrapper'] == 'CPUAmpOptimWrapper'
    assert amp['hidden_dtype'] == 'torch.bfloat16'
    assert all(math.isfinite(v) for v in amp['losses'])
    assert amp['losses'][-1] < amp['losses'][0]  # it trains
    # bf16 keeps ~3 significant digits: losses agree to a few percent, not to fp32 rounding
    for a, b in zip(amp['losses'], fp32['losses']):
        assert a == pytest.approx(b, rel=5e-2)
    assert all(isinstance(v, float) for v in amp['params']['fc1.weight'])
    ckpt = torch.load(tmp_path / 'amp' / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert ckpt['state_dict']['fc1.weight'].dtype == torch.float32  # master weights stay fp32


def test_pointnet2_cpu_ops_under_bf16_autocast() -> None:
    """PointNet2SASSG (FPS, ball query, grouping, three_nn/interpolate) trains in bf16 on CPU.

    The CPU point ops receive bf16 features and fp32 weights under autocast; forward and
    backward must run, and agree with fp32 to bf16 precision. The comparison uses BN's running
    statistics: with batch statistics over 2 x 8 points, BN's mean subtraction amplifies any
    rounding (measured cos 0.67 between fp32 and bf16 gradients, vs 0.999 in eval mode).
    """
    from mmdet3d.models.backbones import PointNet2SASSG

    torch.manual_seed(0)
    backbone = PointNet2SASSG(in_channels=4, num_points=(64, 32, 16, 8),
                              radius=(0.4, 0.8, 1.2, 1.6), num_samples=(8, 8, 8, 8),
                              sa_channels=((16, 16, 32), (32, 32, 32), (32, 32, 32),
                                           (32, 32, 32)),
                              fp_channels=((32, 32), (32, 32)))
    points = torch.rand(2, 256, 4) * 2

    def step(amp: bool) -> tuple[torch.dtype, float, torch.Tensor]:
        backbone.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            feats = backbone(points)['fp_features'][-1]
            loss = feats.float().pow(2).mean()
        loss.backward()
        return feats.dtype, float(loss.detach()), torch.cat([p.grad.flatten()
                                                   for p in backbone.parameters()])

    dtype, loss, grad = step(amp=True)  # training mode: runs, finite
    assert dtype == torch.bfloat16 and math.isfinite(loss) and torch.isfinite(grad).all()
    backbone.eval()
    (dt32, loss32, grad32), (dt16, loss16, grad16) = step(amp=False), step(amp=True)
    assert (dt32, dt16) == (torch.float32, torch.bfloat16)
    assert loss16 == pytest.approx(loss32, rel=2e-2)
    cos = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cos > 0.99, f'bf16 gradient direction differs from fp32: cos={cos:.4f}'


@pytest.mark.slow  # two fresh processes import mmdet3d + spconv (~20 s each on 2 cores)
def test_two_processes_on_cpu_match_one_process(train_cli, repo_root: Path,
                                                tmp_path: Path) -> None:
    """dist_train.sh with 2 CPU processes: gloo, gradients all-reduced, one checkpoint.

    Per-rank batch 4 over 2 ranks sees the same 8 samples per step as one process with batch 8
    (DefaultSampler, no shuffle), and DDP averages the gradients, so plain SGD ends at the same
    parameters up to float32 summation order (tolerance 1e-5).
    """
    iters = 4
    work = tmp_path / 'dist'
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get('PYTHONPATH', '')]))
    env.pop('CUDA_VISIBLE_DEVICES', None)
    cfg = _write_config(tmp_path, 'toy_dist', batch=4, iters=iters)
    start = time.perf_counter()
    out = subprocess.run(
        ['bash', str(repo_root / 'tools' / 'dist_train.sh'), str(cfg), '2',
         '--work-dir', str(work)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    elapsed = time.perf_counter() - start

    records = _records(work)
    assert [r['rank'] for r in records] == [0, 1], f'ranks that finished: {records}'
    for r in records:
        assert r['world_size'] == 2 and r['iters'] == iters
        assert r['backend'] == 'gloo'  # no config edit: the default nccl became gloo
        assert r['wrapper'] == 'MMDistributedDataParallel' and r['device_ids'] is None
    # each rank read its own half of the data
    assert set(records[0]['indices']).isdisjoint(records[1]['indices'])
    assert sorted(records[0]['indices'] + records[1]['indices']) == list(range(N_SAMPLES))
    # gradients were all-reduced: both ranks hold identical parameters after the steps
    assert records[0]['params'] == records[1]['params']
    # the checkpoint was written once, by rank 0, atomically
    assert (records[0]['saves'], records[1]['saves']) == (1, 0)
    assert sorted(p.name for p in work.glob('*.pth')) == [f'iter_{iters}.pth']
    assert not list(work.glob('.tmp-*'))

    # one process, batch 8: the same steps
    train_cli.main([str(_write_config(tmp_path, 'toy_one', batch=8, iters=iters)),
                    '--work-dir', str(tmp_path / 'one')])
    (single,) = _records(tmp_path / 'one')
    for name, values in single['params'].items():
        torch.testing.assert_close(torch.tensor(records[0]['params'][name]),
                                   torch.tensor(values), rtol=0, atol=1e-5, msg=name)
    # DDP's loss is the local mean; the two ranks' mean is the one-process loss
    for l0, l1, ls in zip(records[0]['losses'], records[1]['losses'], single['losses']):
        assert (l0 + l1) / 2 == pytest.approx(ls, rel=1e-5)
    ckpt = torch.load(work / f'iter_{iters}.pth', map_location='cpu', weights_only=False)
    torch.testing.assert_close(ckpt['state_dict']['fc1.weight'].double().flatten(),
                               torch.tensor(records[0]['params']['fc1.weight'],
                                            dtype=torch.float64), rtol=0, atol=0)
    print(f'2-process run through dist_train.sh: {elapsed:.1f} s')
