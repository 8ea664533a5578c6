"""Foundation: package import, train/test CLI, resume on torch >= 2.6, checkpoint trust."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet3d.registry import DATASETS, HOOKS, MODELS
from mmengine.hooks import Hook
from mmengine.model import BaseModel

from concept_distill.checkpoint import UntrustedCheckpointError, load_checkpoint_file

RECORD: dict = {}


@MODELS.register_module(force=True)
class _ToyRegressor(BaseModel):
    """y = w x + b, enough to make Adam state and a loss."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        pred = self.fc(inputs).squeeze(-1)  # default_collate stacked the batch
        if mode == 'loss':
            return dict(loss=((pred - data_samples) ** 2).mean())
        return [p for p in pred]


@DATASETS.register_module(force=True)
class _ToyDataset(torch.utils.data.Dataset):
    """Deterministic linear data."""

    metainfo = dict(name='toy')

    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


@HOOKS.register_module(force=True)
class _RecordStartHook(Hook):
    """Record where training (re)starts and the optimizer state at that moment."""

    def before_train(self, runner) -> None:
        RECORD['start_iter'] = runner.iter
        RECORD['optim_state'] = {k: {n: v.clone() if torch.is_tensor(v) else v
                                     for n, v in s.items()}
                                 for k, s in runner.optim_wrapper.optimizer.state_dict()[
                                     'state'].items()}
        RECORD['weight'] = runner.model.fc.weight.detach().clone()

    def after_train(self, runner) -> None:
        RECORD['end_iter'] = runner.iter


class _KilledError(RuntimeError):
    """Stands in for a run killed mid-way."""


@HOOKS.register_module(force=True)
class _KillAfterHook(Hook):
    """Kill the run right after the checkpoint of iteration ``at`` was written."""

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW)

    def __init__(self, at: int = 0) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.at and runner.iter + 1 == self.at:
            raise _KilledError(f'killed after iter {self.at}')


CONFIG = """
default_scope = 'mmdet3d'
runner_type = 'ConceptDistillRunner'  # as configs/_base_/default_runtime.py sets it
model = dict(type='_ToyRegressor')
train_dataloader = dict(batch_size=4, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        collate_fn=dict(type='default_collate'),
                        dataset=dict(type='_ToyDataset'))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=8)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=0.01))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[6], gamma=0.1)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False),
                     logger=dict(type='LoggerHook', interval=1))
custom_hooks = [dict(type='_RecordStartHook'), dict(type='_KillAfterHook')]
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
log_level = 'WARNING'
"""


@pytest.fixture()
def train_cli(import_tool):
    """tools/train.py as a module (its main() is the CLI)."""
    return import_tool('train')


@pytest.fixture()
def eval_cli(import_tool):
    """tools/test.py as a module."""
    return import_tool('test')


@pytest.fixture()
def toy_config(tmp_path: Path) -> Path:
    cfg = tmp_path / 'toy.py'
    cfg.write_text(CONFIG)
    return cfg


def test_import_from_any_directory(tmp_path: Path) -> None:
    """`import concept_distill` works outside the checkout and registers the runner."""
    code = ('import concept_distill, mmdet3d.registry as r; '
            'assert r.RUNNERS.get("ConceptDistillRunner") is not None; print("ok")')
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('ok')


def test_resume_continues_iteration_and_optimizer(train_cli, toy_config: Path,
                                                 tmp_path: Path) -> None:
    """A run killed after iter 4 resumes at iter 4 with the saved optimizer state."""
    work = tmp_path / 'work'
    with pytest.raises(_KilledError):
        train_cli.main([str(toy_config), '--work-dir', str(work),
                         '--cfg-options', 'custom_hooks.1.at=4'])
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file()
    assert not list(work.glob('.tmp-*')), 'atomic save left a temporary file'
    saved = torch.load(ckpt, map_location='cpu', weights_only=False)
    # mmengine's checkpoint pickles its message hub: torch's safe loader refuses it.
    with pytest.raises(UntrustedCheckpointError, match='iter_4.pth'):
        load_checkpoint_file(str(ckpt))

    train_cli.main([str(toy_config), '--work-dir', str(work), '--resume'])
    assert RECORD['start_iter'] == 4
    assert RECORD['end_iter'] == 8
    assert torch.equal(RECORD['weight'], saved['state_dict']['fc.weight'])
    saved_state = saved['optimizer']['state']
    assert set(RECORD['optim_state']) == set(saved_state)
    for k, s in saved_state.items():
        for name, value in s.items():
            assert torch.equal(torch.as_tensor(RECORD['optim_state'][k][name]),
                               torch.as_tensor(value)), name
    # the LR scheduler was restored too (milestone 6 reached during the resumed part)
    last = torch.load(work / 'iter_8.pth', map_location='cpu', weights_only=False)
    assert last['optimizer']['param_groups'][0]['lr'] == pytest.approx(0.001)


def test_load_from_full_checkpoint_needs_trust(train_cli, eval_cli, toy_config: Path,
                                               tmp_path: Path) -> None:
    """tools/test.py refuses a pickled training checkpoint unless --trust-checkpoint."""
    work = tmp_path / 'work'
    train_cli.main([str(toy_config), '--work-dir', str(work),
                     '--cfg-options', 'train_cfg.max_iters=4'])
    cfg_text = CONFIG + """
test_dataloader = dict(batch_size=4, num_workers=0,
                       sampler=dict(type='DefaultSampler', shuffle=False),
                       collate_fn=dict(type='default_collate'), dataset=dict(type='_ToyDataset'))
test_cfg = dict(type='TestLoop')
test_evaluator = dict(type='_ToyMSE')
"""
    from mmdet3d.registry import METRICS
    from mmengine.evaluator import BaseMetric

    @METRICS.register_module(force=True)
    class _ToyMSE(BaseMetric):
        def process(self, data_batch, data_samples):
            for p, y in zip(data_samples, data_batch['data_samples']):
                self.results.append(float((p - y) ** 2))

        def compute_metrics(self, results):
            return dict(mse=sum(results) / len(results))

    cfg = tmp_path / 'toy_test.py'
    cfg.write_text(cfg_text)
    with pytest.raises(UntrustedCheckpointError, match='--trust-checkpoint'):
        eval_cli.main([str(cfg), str(work / 'iter_4.pth'), '--work-dir', str(tmp_path / 't')])
    metrics = eval_cli.main([str(cfg), str(work / 'iter_4.pth'), '--work-dir',
                              str(tmp_path / 't'), '--trust-checkpoint'])
    assert metrics['mse'] >= 0

    # A plain state-dict export (tensors + plain metadata) loads with the safe loader.
    plain = tmp_path / 'plain.pth'
    torch.save(dict(state_dict=torch.load(work / 'iter_4.pth', weights_only=False)[
        'state_dict'], meta=dict(iter=4, note='tensors only')), plain)
    metrics = eval_cli.main([str(cfg), str(plain), '--work-dir', str(tmp_path / 't2')])
    assert metrics['mse'] >= 0
