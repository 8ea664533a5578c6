"""Multi-process set-up that also works without an accelerator (gloo on CPU processes).

mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device(local_rank)`` before creating
the process group, and its ``wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to DDP; both fail
for CPU processes. ``ConceptDistillRunner`` uses the helpers here on CPU only, so accelerator
runs keep mmengine's own path unchanged.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

import torch.multiprocessing as mp
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch import distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel

# Backends that need an accelerator; on CPU processes they are replaced by gloo.
_ACCELERATOR_BACKENDS = ('nccl', 'hccl', 'cncl', 'mccl')


def runs_on_cpu() -> bool:
    """Whether this process computes on CPU (no CUDA/NPU/MLU/MUSA device visible)."""
    return get_device() == 'cpu'


def cpu_dist_cfg(dist_cfg: dict | None) -> dict:
    """``env_cfg.dist_cfg`` for a CPU process: an accelerator-only backend becomes gloo."""
    cfg = dict(dist_cfg or {})
    backend = cfg.get('backend', 'nccl')  # mmengine's default
    if backend in _ACCELERATOR_BACKENDS:
        print_log(f'No accelerator in this process: using the gloo backend instead of '
                  f'{backend!r}.', logger='current')
        backend = 'gloo'
    cfg['backend'] = backend
    return cfg


def init_cpu_process_group(launcher: str, dist_cfg: dict | None) -> None:
    """Create the default process group of a CPU process started by torchrun.

    Same environment contract as mmengine's ``_init_dist_pytorch`` (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT``), without the ``torch.cuda.set_device`` call.
    """
    if launcher != 'pytorch':
        raise NotImplementedError(
            f'launcher={launcher!r} without a GPU: on CPU, start the processes with torchrun '
            '(tools/dist_train.sh, --launcher pytorch).')
    kwargs: dict[str, Any] = cpu_dist_cfg(dist_cfg)
    init_backend = kwargs.pop('init_backend', 'torch')
    if init_backend != 'torch':
        raise NotImplementedError(f'init_backend={init_backend!r} on CPU: only "torch"')
    if kwargs.get('timeout') is not None:  # configs give seconds, torch wants a timedelta
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    if mp.get_start_method(allow_none=True) is None:  # as mmengine's init_dist
        mp.set_start_method('spawn')
    torch_dist.init_process_group(rank=int(os.environ['RANK']),
                                  world_size=int(os.environ['WORLD_SIZE']), **kwargs)


def cpu_model_wrapper_cfg(model_wrapper_cfg: dict | None,
                          find_unused_parameters: bool) -> dict:
    """``model_wrapper_cfg`` for DDP over CPU modules: ``device_ids=None``.

    Without a config this is what mmengine builds (``MMDistributedDataParallel``,
    ``broadcast_buffers=False``); a config's own ``device_ids`` is kept, because mmengine's
    registry gives config values precedence over the ``[LOCAL_RANK]`` default it adds.
    """
    if model_wrapper_cfg is None:
        return dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                    find_unused_parameters=find_unused_parameters, device_ids=None)
    cfg = dict(model_wrapper_cfg)
    cfg.setdefault('type', 'MMDistributedDataParallel')
    wrapper = MODEL_WRAPPERS.get(cfg['type'])
    if isinstance(wrapper, type) and issubclass(wrapper, DistributedDataParallel):
        cfg.setdefault('device_ids', None)  # other wrappers take no device_ids
    return cfg
