"""The distiller's teacher, built on first use: a run on cached features never builds it."""
from __future__ import annotations

import copy
import logging
import warnings

import torch
from mmdet3d.registry import MODELS
from mmengine.logging import print_log
from torch import nn

from concept_distill.models.distill.clip_teacher import CLIPTeacher, teacher_spec


class LazyCLIPTeacher(nn.Module):
    """A `CLIPTeacher` whose network is built (and moved) only when something needs it.

    What the distiller and its hooks read before a forward (the cache key, embedding width,
    patch grid, prefix count, `pixels_to_grid`) comes from `teacher_spec(cfg)`, which reads
    configs and the weights files' digests only. The network is built on the first forward,
    or on access to its parameters, state dict or any other attribute of a built teacher,
    then placed on the device the distiller was moved to (a small buffer follows `.to()`).
    When every training sample carries cached teacher features, no forward happens: no ViT is
    built, loaded or moved to a GPU.
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        spec = teacher_spec(cfg)  # raises on a non-CLIPTeacher type or a missing file
        self._cfg = copy.deepcopy(dict(cfg))
        self._spec = spec
        self.model_name = spec['model_name']
        self.embed_dim = spec['embed_dim']
        self.image_size = tuple(spec['image_size'])
        self.resize_mode = spec['resize_mode']
        self.num_prefix = spec['num_prefix']
        self.prefix_dim = spec['prefix_dim']
        self.grid_size = tuple(spec['grid_size'])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        # Follows the distiller's `.to()` / `.cuda()`: where the network goes once built.
        self.register_buffer('_anchor', torch.zeros(()), persistent=False)
        self._net: CLIPTeacher | None = None
        super().train(False)
        if str(self.weights_digest).startswith('random-init'):
            # Said at build, as a built CLIPTeacher does (the network may never be built).
            msg = (f'CLIPTeacher {self.model_name}: no weights file given, the teacher is '
                   f'RANDOMLY initialised (seed {self._cfg.get("seed", 0)}); results '
                   'demonstrate the pipeline only.')
            warnings.warn(msg, UserWarning, stacklevel=3)
            print_log(msg, logger='current', level=logging.WARNING)

    @property
    def built(self) -> bool:
        """Whether the network exists (a forward or a parameter access happened)."""
        return self._net is not None

    @property
    def weights_digest(self) -> str:
        """sha256 of the weights file, or the random-init marker."""
        return self._spec['cache_key']['weights_digest']

    def cache_key(self) -> dict:
        """The built teacher's `cache_key()` (equal by construction; tests compare)."""
        return copy.deepcopy(self._spec['cache_key'])

    def network(self) -> CLIPTeacher:
        """The `CLIPTeacher`, built now if it was not yet, on the distiller's device."""
        if self._net is None:
            with warnings.catch_warnings():  # the random-init warning was given at build
                warnings.filterwarnings('ignore', message='.*RANDOMLY', category=UserWarning)
                net = MODELS.build(copy.deepcopy(self._cfg))
            if not isinstance(net, CLIPTeacher):
                raise TypeError(f'teacher must build a CLIPTeacher, got {type(net)}')
            net.to(device=self._anchor.device)
            if self._anchor.dtype == torch.float64:  # the distiller was moved with .double()
                net.double()
            self._net = net  # registered as a submodule: .to() and parameters() reach it
        return self._net

    pixels_to_grid = CLIPTeacher.pixels_to_grid  # reads image_size and resize_mode only

    def forward(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images -> the teacher's outputs (builds the network on the first call)."""
        return self.network()(imgs)

    def freeze(self) -> LazyCLIPTeacher:
        """Freeze the network if built (a new one is built frozen); eval mode."""
        if self._net is not None:
            self._net.freeze()
        return super().train(False)

    def train(self, mode: bool = True) -> LazyCLIPTeacher:
        """Stay in eval mode whatever the caller asks: the teacher is never trained."""
        return super().train(False)

    def named_parameters(self, *args, **kwargs):
        """The network's parameters (built on demand)."""
        self.network()
        return super().named_parameters(*args, **kwargs)

    def parameters(self, recurse: bool = True):
        """The network's parameters (built on demand)."""
        self.network()
        return super().parameters(recurse)

    def state_dict(self, *args, **kwargs):
        """The network's state dict (built on demand)."""
        return self.network().state_dict(*args, **kwargs)

    def __getattr__(self, name: str):
        # Parameters, buffers and submodules first (nn.Module's own lookup); anything else a
        # built teacher has (visual, mapping, precision, ...) builds it.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith('_'):
                raise
            return getattr(self.network(), name)

    def extra_repr(self) -> str:
        return f'model_name={self.model_name}, built={self.built}'
