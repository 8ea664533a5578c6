"""Frozen CLIP image encoder (open_clip) used as the distillation teacher."""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import warnings

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmengine.logging import print_log
from torch import nn

from concept_distill.models.distill.prefix_mapping import PrefixMappingNetwork

_DIGEST_CACHE: dict[tuple[str, int, int], str] = {}
_PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, memoised per (path, size, mtime) within the process."""
    path = os.path.realpath(path)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGEST_CACHE:
        sha = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 22), b''):
                sha.update(chunk)
        _DIGEST_CACHE[key] = sha.hexdigest()
    return _DIGEST_CACHE[key]


def _deep_update(base: dict, overrides: dict) -> dict:
    """Recursively merge `overrides` into a copy of `base` (nested dicts merged, rest replaced)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _plain(value):
    """Tuples -> lists recursively, so cache keys compare equal after a JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@MODELS.register_module()
class CLIPTeacher(nn.Module):
    """Frozen open_clip image tower: global embedding, patch tokens and optional prefix tokens.

    Args:
        model_name: open_clip built-in model name (e.g. 'ViT-B-16') or 'local-dir:<folder>'.
        pretrained: path of a local CLIP weights file, or None for a deterministic random init
            (demonstrates the pipeline only; a warning says so). Never a download tag.
        precision: 'fp32', 'fp16' or 'bf16' (open_clip's mixed low precision, LayerNorm in fp32).
        mapping: None, or dict(checkpoint=path|None, num_prefix=K, prefix_dim=None,
            hidden_dim=None) for a frozen ClipCap-style mapper to K prefix tokens.
        seed: seed of the random init (teacher and mapper) when no weights file is given.
        resize_mode: 'squash' (default: whole frame, aspect not kept, every paired point stays
            visible to the teacher), or open_clip's 'shortest' (centre crop) / 'longest' (pad);
            None takes the mode from the open_clip preprocessing config.
        arch_overrides: optional dict merged into the open_clip model config (e.g. a tiny
            `vision_cfg` for tests); it is part of the cache key.
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16',
                 pretrained: str | None = None,
                 precision: str = 'fp32',
                 mapping: dict | None = None,
                 seed: int = 0,
                 resize_mode: str | None = 'squash',
                 arch_overrides: dict | None = None) -> None:
        super().__init__()
        import open_clip  # deferred: importing open_clip pulls in torchvision and timm

        if precision not in _PRECISIONS:
            raise ValueError(f'precision must be one of {sorted(_PRECISIONS)}, got {precision!r}')
        if model_name.startswith('hf-hub:'):
            raise ValueError(f'CLIPTeacher never downloads: use a built-in model name or '
                             f"'local-dir:<folder>' instead of {model_name!r}")
        self.model_name = model_name
        self.precision = precision
        self.seed = seed
        self.arch_overrides = copy.deepcopy(arch_overrides) if arch_overrides else None

        kwargs = {}
        if self.arch_overrides:
            base_cfg = open_clip.get_model_config(model_name.replace('/', '-'))
            if base_cfg is None:
                raise ValueError(f'unknown open_clip model {model_name!r}')
            kwargs = _deep_update(base_cfg, self.arch_overrides)

        if pretrained is not None:
            # A tag such as 'openai' would make open_clip download; only local files are allowed.
            if not os.path.isfile(pretrained):
                raise FileNotFoundError(
                    f'CLIP weights file not found: {pretrained!r} (CLIPTeacher loads local files '
                    f'only; download the weights beforehand and give their path)')
            self.weights_digest = file_sha256(pretrained)
            model = open_clip.create_model(
                model_name, pretrained=str(pretrained), precision=precision,
                pretrained_image=False, pretrained_text=False, require_pretrained=True,
                **kwargs)
        else:
            self.weights_digest = f'random-init-seed{seed}'
            # Seeded, RNG-isolated init: two processes build identical weights, so a feature cache
            # written by one matches a teacher built by another.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = open_clip.create_model(
                    model_name, pretrained=None, precision=precision,
                    pretrained_image=False, pretrained_text=False, **kwargs)
            msg = (f'CLIPTeacher {model_name}: no weights file given, the teacher is RANDOMLY '
                   f'initialised (seed {seed}); results demonstrate the pipeline only.')
            warnings.warn(msg, UserWarning, stacklevel=2)
            print_log(msg, logger='current', level=logging.WARNING)

        # Only the image tower is a teacher; dropping the text tower saves ~40% of the memory.
        self.visual = model.visual
        del model
        if not hasattr(self.visual, 'output_tokens'):
            raise ValueError(f'{model_name}: the image tower {type(self.visual).__name__} does '
                             f'not expose patch tokens; use a ViT-based open_clip model')
        self.visual.output_tokens = True

        pp = open_clip.get_model_preprocess_cfg(self.visual)
        size = pp.get('size', 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.resize_mode = resize_mode or pp.get('resize_mode', 'shortest')
        if self.resize_mode not in ('squash', 'shortest', 'longest'):
            raise ValueError(f'unknown resize_mode {self.resize_mode!r}')
        self.interpolation = pp.get('interpolation', 'bicubic')
        self.fill_color = float(pp.get('fill_color', 0))
        self.mean = tuple(float(m) for m in pp['mean'])
        self.std = tuple(float(s) for s in pp['std'])
        self.register_buffer('_mean', torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('_std', torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = int(self.visual.output_dim)

        self.mapping = None
        self.mapping_digest = None
        if mapping is not None:
            self._build_mapping(dict(mapping))
        self.freeze()

    def _build_mapping(self, cfg: dict) -> None:
        """Build the frozen prefix mapper from a local file (or a seeded random init)."""
        checkpoint = cfg.pop('checkpoint', None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.mapping = PrefixMappingNetwork(self.embed_dim, **cfg)
        if checkpoint is None:
            self.mapping_digest = f'random-init-seed{self.seed + 1}'
            print_log('CLIPTeacher: the prefix mapping network is randomly initialised.',
                      logger='current', level=logging.WARNING)
        else:
            if not os.path.isfile(checkpoint):
                raise FileNotFoundError(f'mapping network file not found: {checkpoint!r}')
            state = torch.load(checkpoint, map_location='cpu', weights_only=True)
            self.mapping.load_mapping_state(state, source=str(checkpoint))
            self.mapping_digest = file_sha256(checkpoint)

    @property
    def num_prefix(self) -> int:
        """Number of prefix tokens (0 without a mapping network)."""
        return self.mapping.num_prefix if self.mapping is not None else 0

    @property
    def prefix_dim(self) -> int:
        """Width of the prefix tokens (the embedding width without a mapping network)."""
        return self.mapping.prefix_dim if self.mapping is not None else self.embed_dim

    @property
    def num_patches(self) -> int:
        """Number of patch tokens per image."""
        grid = getattr(self.visual, 'grid_size', None)
        return int(grid[0] * grid[1]) if grid is not None else -1

    def freeze(self) -> CLIPTeacher:
        """Turn off gradients for every parameter and switch to eval mode."""
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> CLIPTeacher:
        """Stay in eval mode whatever the caller asks: the teacher is never trained."""
        return super().train(False)

    def cache_key(self) -> dict:
        """What identifies the teacher's outputs: a feature cache must carry the same key."""
        return _plain(dict(
            model_name=self.model_name,
            weights_digest=self.weights_digest,
            image_size=list(self.image_size),
            mean=list(self.mean),
            std=list(self.std),
            mapping_digest=self.mapping_digest,
            resize_mode=self.resize_mode,
            arch_overrides=self.arch_overrides,
        ))

    def preprocess(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) uint8 or float 0-255 RGB -> resized, normalised (B,3,h,w) model input."""
        if imgs.dim() != 4 or imgs.shape[1] != 3:
            raise ValueError(f'teacher expects images (B, 3, H, W), got {tuple(imgs.shape)}')
        x = imgs.float() / 255.0
        th, tw = self.image_size
        h, w = x.shape[-2:]
        mode = self.interpolation if self.interpolation in ('bilinear', 'bicubic') else 'bilinear'

        def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
            if tuple(t.shape[-2:]) == tuple(size):
                return t
            return F.interpolate(t, size=size, mode=mode, align_corners=False, antialias=True)

        if self.resize_mode == 'squash':
            x = resize(x, (th, tw))
        elif self.resize_mode == 'shortest':
            scale = max(th / h, tw / w)
            x = resize(x, (max(th, round(h * scale)), max(tw, round(w * scale))))
            top = (x.shape[-2] - th) // 2
            left = (x.shape[-1] - tw) // 2
            x = x[..., top:top + th, left:left + tw]
        else:  # longest: fit inside, pad the rest with the fill colour
            scale = min(th / h, tw / w)
            nh, nw = min(th, round(h * scale)), min(tw, round(w * scale))
            x = resize(x, (nh, nw))
            top, left = (th - nh) // 2, (tw - nw) // 2
            x = F.pad(x, (left, tw - nw - left, top, th - nh - top), value=self.fill_color / 255)
        x = x.clamp(0.0, 1.0)
        x = (x - self._mean) / self._std
        return x

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images -> dict(global (B,D), patch_tokens (B,P,D)[, prefix_tokens (B,K,Dp)]), fp32."""
        if self.training:  # someone bypassed train(); the teacher must stay deterministic
            super().train(False)
        x = self.preprocess(imgs.to(self._mean.device))
        # open_clip's low precision keeps some tensors (class token, LayerNorms) in fp32; the
        # input must match the patch-embedding weights.
        pooled, tokens = self.visual(x.to(_PRECISIONS[self.precision]))
        # Patch tokens leave the tower at its width; project them like the pooled token so they
        # live in the same D-dim space as the global embedding (MaskCLIP-style dense features).
        proj = getattr(self.visual, 'proj', None)
        if proj is not None and tokens.shape[-1] == proj.shape[0]:
            tokens = tokens @ proj
        out = {'global': pooled.float(), 'patch_tokens': tokens.float()}
        if self.mapping is not None:
            out['prefix_tokens'] = self.mapping(out['global']).float()
        return out

    def extra_repr(self) -> str:
        return (f'model_name={self.model_name}, weights={self.weights_digest}, '
                f'precision={self.precision}, image_size={self.image_size}, '
                f'resize_mode={self.resize_mode}, num_prefix={self.num_prefix}')


__all__ = ['CLIPTeacher', 'file_sha256']
