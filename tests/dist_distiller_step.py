"""Distiller steps compared between N processes x batch b and 1 process x batch N*b.

Shared by tests/test_engine/test_distributed_distiller.py (the one-process reference, in the
test's own process) and the torchrun workers it starts (``python -m torch.distributed.run
--nproc_per_node 2 tests/dist_distiller_step.py OUT``): both build the same seeded models,
feed the same batches and record the loss terms, every parameter's gradient and the
contrastive centre of each step, so the test compares them.

The steps are deterministic: clouds of equal size (no resampling), BatchNorm on its running
statistics (per-rank batch statistics differ from the full batch's; SyncBN is CUDA-only),
no dropout. What differs between the two set-ups is only what the loss reads across the
batch: the gathered contrastive term, the centre's mean and the dense term's token count.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

STEPS = 2  # the second step runs with a centre already set (its EMA path) and moved weights
BATCH = 4  # samples per step: 2 per rank in 2 processes, all 4 in one
LR = 0.05  # plain SGD between the steps, the same on both sides

# name -> distiller_cfg overrides. Between them they switch every loss term on: the
# per-concept term (patch matching / prefix tokens), global, contrastive with a learnable
# temperature, centring, set, dense, token-wise; 'prefix_inner_fp' also reads an inner FP
# level, whose later FP module gets no gradient (DDP-safe only when frozen).
CASES = {
    'patch_dense': dict(loss=dict(dense_weight=0.5)),
    'prefix_inner_fp': dict(
        token_adapter=dict(level=-2),
        teacher=dict(mapping=dict(checkpoint=None, num_prefix=4, prefix_dim=16)),
        loss=dict(token_weight=0.5, set_weight=0.0)),
}


def build_case(name: str) -> nn.Module:
    """The seeded model of case ``name``, in training mode with BN/dropout in eval."""
    from distill_builders import distiller_cfg
    from mmdet3d.registry import MODELS

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the tiny random teacher's warning
        model = MODELS.build(distiller_cfg(**CASES[name]))
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            module.eval()
    return model


def step_batch(step: int, size: int) -> dict:
    """The full batch of ``step``; some points lie outside the image (different numbers per
    sample), so the ranks hold different numbers of valid dense tokens."""
    from distill_builders import paired_batch

    batch = paired_batch(b=size, n=256, seed=100 + step)
    for i, sample in enumerate(batch['data_samples']):
        points = batch['inputs']['points'][i]
        outside = points[:, 0] > 4.0 * (1 - 0.2 * (i + 1) / size)
        sample.pixel_uv[outside] = -50.0
    return batch


def rank_slice(batch: dict, rank: int, world: int) -> dict:
    """Rank ``rank``'s contiguous share of a full batch (DefaultSampler without shuffling
    deals out indices round-robin; contiguous shares keep the row order simple)."""
    n = len(batch['data_samples']) // world
    part = slice(rank * n, (rank + 1) * n)
    return dict(inputs={k: v[part] for k, v in batch['inputs'].items()},
                data_samples=batch['data_samples'][part])


def run_steps(model: nn.Module, forward: nn.Module, rank: int = 0, world: int = 1) -> dict:
    """``STEPS`` SGD steps of ``forward`` (``model`` or its DDP wrapper) on this rank's share.

    Returns per step: every ``loss_*`` term and the logged temperature (this rank's values),
    every parameter's gradient (after DDP's averaging) and the contrastive centre.
    """
    params = dict(model.named_parameters())
    record: dict = dict(losses=[], grads=[], center=[], temperature=[])
    for step in range(STEPS):
        batch = rank_slice(step_batch(step, BATCH), rank, world)
        data = model.data_preprocessor(batch, True)
        losses = forward(**data, mode='loss')
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        model.zero_grad(set_to_none=True)
        total.backward()
        record['losses'].append({k: float(v.detach()) for k, v in losses.items()
                                 if k.startswith('loss')})
        record['temperature'].append(float(losses['temperature']))
        record['grads'].append({k: None if p.grad is None else p.grad.detach().clone()
                                for k, p in params.items()})
        record['center'].append(model.alignment_loss.target_center.detach().clone())
        with torch.no_grad():
            for p in params.values():
                if p.grad is not None:
                    p.sub_(LR * p.grad)
    return record


GATHER_SIZES = (3, 1)  # rows per rank for the unequal-batch probe of the gather


def gather_probe_loss(rows: torch.Tensor, offset: int, n: int) -> torch.Tensor:
    """A rank's loss from all rows: its own rows scored against every row (as InfoNCE)."""
    return torch.logsumexp(rows[offset:offset + n] @ rows.t(), dim=1).sum()


def gather_probe_rows() -> torch.Tensor:
    """The probe's rows of all ranks, in rank order."""
    return torch.randn(sum(GATHER_SIZES), 3, generator=torch.Generator().manual_seed(7))


def gather_probe(rank: int) -> dict:
    """`gather_with_grad` with unequal per-rank batches: gathered rows, offset, gradient."""
    from concept_distill.models.distill.concept_alignment_loss import gather_with_grad

    start = sum(GATHER_SIZES[:rank])
    x = gather_probe_rows()[start:start + GATHER_SIZES[rank]].requires_grad_(True)
    rows, offset = gather_with_grad(x)
    gather_probe_loss(rows, offset, GATHER_SIZES[rank]).backward()
    return dict(rows=rows.detach(), offset=offset, grad=x.grad)


def main(out: str) -> None:
    """A torchrun worker: every case under DDP (gloo, CPU), records to ``out``."""
    from mmdet3d.utils import register_all_modules
    from torch import distributed as torch_dist
    from torch.nn.parallel import DistributedDataParallel

    import concept_distill  # noqa: F401

    torch.set_num_threads(1)
    register_all_modules(init_default_scope=True)
    torch_dist.init_process_group('gloo')
    rank, world = torch_dist.get_rank(), torch_dist.get_world_size()
    for name in CASES:
        model = build_case(name)
        # mmengine's defaults for DDP: no buffer broadcast, no unused-parameter search.
        ddp = DistributedDataParallel(model, device_ids=None, broadcast_buffers=False,
                                      find_unused_parameters=False)
        record = run_steps(model, ddp, rank, world)
        torch.save(record, Path(out) / f'{name}_rank{rank}.pt')
    torch.save(gather_probe(rank), Path(out) / f'gather_rank{rank}.pt')
    torch_dist.barrier()
    # Every record is written: leave without gloo's teardown, which was seen to hang at
    # exit (both ranks' files complete, the processes never ending).
    sys.stdout.flush()
    os._exit(0)


if __name__ == '__main__':
    # torchrun puts this file's folder (tests/) first on sys.path: distill_builders and
    # conftest import from there.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1])
