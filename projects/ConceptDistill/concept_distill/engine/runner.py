"""``ConceptDistillRunner``: mmengine's Runner with the project's checkpoint trust model."""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from collections.abc import Callable
from typing import Any

from mmdet3d.registry import RUNNERS
from mmengine.dist import is_distributed, master_only
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from concept_distill.checkpoint.checkpoint_io import load_checkpoint_file
from concept_distill.engine.distributed import (
    cpu_model_wrapper_cfg,
    init_cpu_process_group,
    runs_on_cpu,
)


@RUNNERS.register_module()
class ConceptDistillRunner(Runner):
    """Runner that resumes its own checkpoints and writes checkpoints atomically.

    - ``resume`` loads with ``weights_only=False`` (the file is the user's own run) and logs it.
    - ``load_from`` keeps torch's safe ``weights_only=True`` unless the config sets
      ``trust_checkpoint=True`` (``--trust-checkpoint`` on the command line).
    - checkpoints are written to a temporary file and renamed, so an interrupted save never
      replaces a good checkpoint with a truncated one.
    - multi-process runs also work on CPU (torchrun + gloo, DDP with ``device_ids=None``);
      with an accelerator, mmengine's set-up is used unchanged (engine/distributed.py).
    """

    _resuming = False

    def setup_env(self, env_cfg: dict) -> None:
        """mmengine's set-up; on CPU the process group is created here, without CUDA calls."""
        if self.distributed and not is_distributed() and runs_on_cpu():
            # mmengine's init_dist would call torch.cuda.set_device; with the group already
            # initialised, super().setup_env skips it and does the rest as usual.
            init_cpu_process_group(self.launcher, env_cfg.get('dist_cfg'))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: dict | None, model: Any) -> Any:
        """mmengine's wrapping; DDP over a CPU module gets ``device_ids=None``."""
        if self.distributed and not is_model_wrapper(model) and runs_on_cpu():
            model_wrapper_cfg = cpu_model_wrapper_cfg(
                model_wrapper_cfg, bool(self.cfg.get('find_unused_parameters', False)))
        return super().wrap_model(model_wrapper_cfg, model)

    def resume(self, filename: str, *args: Any, **kwargs: Any) -> None:
        """Resume this run from ``filename`` (trusted: it is the user's own checkpoint)."""
        self.logger.warning(
            f'Resuming from {filename} with torch.load(weights_only=False): resume only '
            'checkpoints written by your own runs (see docs/installation.md, trust model).')
        self._resuming = True
        try:
            super().resume(filename, *args, **kwargs)
        finally:
            self._resuming = False

    def load_checkpoint(self, filename: str, map_location: str | Callable = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:  # noqa: B006
        """Load ``filename`` into the model, safely unless resuming or trusted."""
        trusted = self._resuming or bool(self.cfg.get('trust_checkpoint', False))
        if osp.isfile(osp.expanduser(filename)):
            checkpoint = load_checkpoint_file(filename, map_location, trusted=trusted)
        else:  # URLs and other schemes: mmengine's loaders (torch's safe default applies)
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict,
                                               revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename} (trusted={trusted})')
        return checkpoint

    @master_only  # only rank 0 writes, as in mmengine; other ranks must not rename files
    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        """Write the checkpoint under a temporary name, then rename it into place."""
        fd, tmp_path = tempfile.mkstemp(prefix=f'.tmp-{filename}-', dir=out_dir)
        os.close(fd)
        tmp_name = osp.basename(tmp_path)
        try:
            super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
            os.replace(tmp_path, osp.join(out_dir, filename))
        finally:
            if osp.exists(tmp_path):
                os.remove(tmp_path)
