"""Frozen CLIP image encoder (open_clip) used as the distillation teacher."""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import types
import warnings
import zipfile

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmengine.logging import print_log
from torch import nn

from concept_distill.models.distill.prefix_mapping import (
    MAPPING_TYPES,
    build_prefix_mapper,
    clipcap_input_width,
    clipcap_mapping_type,
    load_clipcap_mapper,
)

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


def _canonical(name: str) -> str:
    """open_clip's own spelling of a model name ('ViT-B/32' -> 'ViT-B-32')."""
    return name.replace('/', '-')


@functools.lru_cache(maxsize=1)
def openai_release_digests() -> dict[str, str]:
    """sha256 of OpenAI's released CLIP files -> model name, read from open_clip's registry.

    OpenAI publishes each file under a URL whose path is the file's sha256, so a local copy of
    an OpenAI release is recognised by its digest (HF-hub conversions are other files).
    """
    import open_clip
    from open_clip import pretrained as registry

    out = {}
    for name, tag in open_clip.list_pretrained():
        if tag != 'openai' or name.endswith('-quickgelu'):
            continue
        url = registry.get_pretrained_cfg(name, tag).get('url', '')
        match = re.search(r'/([0-9a-f]{64})/', url)
        if match:
            out[match.group(1)] = name
    return out


def _is_torchscript_archive(path: str) -> bool:
    """True for a TorchScript zip (OpenAI's own CLIP releases are such archives)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith('/constants.pkl') or '/code/' in n for n in archive.namelist())


def _load_torchscript_weights(model: nn.Module, path: str) -> None:
    """Load the tensors of a TorchScript CLIP archive (OpenAI's format) into an open_clip model.

    torch.load(weights_only=True) refuses these archives; torch.jit.load reads them without
    unpickling Python objects.
    """
    state = torch.jit.load(path, map_location='cpu').state_dict()
    # OpenAI's archives carry three scalar hyper-parameters, and scripted modules keep
    # buffers an eager open_clip model does not save.
    transient = {n for n, _ in model.named_buffers()} - set(model.state_dict())
    for key in ('input_resolution', 'context_length', 'vocab_size', *transient):
        state.pop(key, None)
    model.load_state_dict(state, strict=True)


@MODELS.register_module()
class CLIPTeacher(nn.Module):
    """Frozen open_clip image tower: global embedding, patch tokens and optional prefix tokens.

    Args:
        model_name: open_clip built-in model name (e.g. 'ViT-B-16') or 'local-dir:<folder>'.
            OpenAI's CLIP weights need the '-quickgelu' name (e.g. 'ViT-B-32-quickgelu'): they
            were trained with QuickGELU, and open_clip's plain names build nn.GELU.
        pretrained: path of a local CLIP weights file (open_clip / HF state dict, or one of
            OpenAI's TorchScript releases), or None for a deterministic random init
            (demonstrates the pipeline only; a warning says so). Never a download tag.
        precision: 'fp32', 'fp16' or 'bf16' (open_clip's mixed low precision, LayerNorm in fp32).
        mapping: None, or a frozen ClipCap mapper to K prefix tokens: dict(
            checkpoint=<ClipCap .pt file>|None, mapping_type='mlp'|'transformer',
            clip_model=<open_clip name of the CLIP it was trained on; required with a file and
            equal to `model_name`>, num_prefix=K, prefix_dim=W, and the type's own fields
            (mlp: hidden_dim; transformer: clip_length, num_layers, num_heads, mlp_ratio),
            normalize_input=None (ClipCap's convention: raw for mlp, unit norm for
            transformer)). See prefix_mapping.py for the file layout.
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
        base_cfg = open_clip.get_model_config(_canonical(model_name))
        if self.arch_overrides:
            if base_cfg is None:
                raise ValueError(f'unknown open_clip model {model_name!r}')
            kwargs = _deep_update(base_cfg, self.arch_overrides)
        # open_clip builds QuickGELU only when the model config says so (the '-quickgelu'
        # names); the activation is part of what the teacher computes.
        self.quick_gelu = bool((kwargs or base_cfg or {}).get('quick_gelu', False))

        if pretrained is not None:
            # A tag such as 'openai' would make open_clip download; only local files are allowed.
            if not os.path.isfile(pretrained):
                raise FileNotFoundError(
                    f'CLIP weights file not found: {pretrained!r} (CLIPTeacher loads local files '
                    f'only; download the weights beforehand and give their path)')
            self.weights_digest = file_sha256(pretrained)
            self._check_openai_release(str(pretrained))
            if _is_torchscript_archive(str(pretrained)):
                model = open_clip.create_model(
                    model_name, pretrained=None, precision=precision, pretrained_image=False,
                    pretrained_text=False, **kwargs)
                _load_torchscript_weights(model, str(pretrained))
            else:
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
        self.mapping_spec = None
        if mapping is not None:
            self._build_mapping(dict(mapping))
        self.freeze()

    def _check_openai_release(self, path: str) -> None:
        """OpenAI's CLIP releases must be built with QuickGELU and under their own model."""
        release = openai_release_digests().get(self.weights_digest)
        if release is None:
            return
        base = _canonical(self.model_name).removesuffix('-quickgelu')
        if base != release:
            raise ValueError(f'CLIP weights file {path} is OpenAI\'s {release} release but '
                             f'teacher.model_name is {self.model_name!r}; use '
                             f"'{release}-quickgelu'")
        if not self.quick_gelu:
            raise ValueError(
                f'CLIP weights file {path} is OpenAI\'s {release} release, trained with '
                f'QuickGELU, but teacher.model_name={self.model_name!r} builds nn.GELU (a '
                f"different network); use model_name='{release}-quickgelu'")

    def _build_mapping(self, cfg: dict) -> None:
        """Build the frozen prefix mapper from a ClipCap file (or a seeded random init)."""
        checkpoint = cfg.pop('checkpoint', None)
        clip_model = cfg.pop('clip_model', None)
        mapping_type = cfg.pop('mapping_type', 'mlp')
        if mapping_type not in MAPPING_TYPES:
            raise ValueError(f'teacher.mapping.mapping_type must be one of {MAPPING_TYPES}, '
                             f'got {mapping_type!r}')
        if clip_model is not None and _canonical(clip_model) != _canonical(self.model_name):
            raise ValueError(
                f'the prefix mapper was trained on CLIP {clip_model!r} '
                f'(teacher.mapping.clip_model) but the teacher is {self.model_name!r} '
                f'(teacher.model_name); its prefix tokens would be computed from embeddings it '
                f'has never seen: use the same open_clip name for both')
        state = None
        if checkpoint is not None:
            if not os.path.isfile(checkpoint):
                raise FileNotFoundError(f'mapping network file not found: {checkpoint!r}')
            if clip_model is None:
                raise ValueError(
                    f'teacher.mapping.clip_model is required with the mapping file '
                    f'{checkpoint}: the open_clip name of the CLIP the mapper was trained on '
                    f"(ClipCap's released mappers: 'ViT-B-32-quickgelu' for the MLP ones)")
            state = torch.load(checkpoint, map_location='cpu', weights_only=True)
            self._check_clipcap_file(state, str(checkpoint), mapping_type, clip_model)
        if cfg.get('normalize_input') is None:
            cfg.pop('normalize_input', None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.mapping = build_prefix_mapper(self.embed_dim, mapping_type, **cfg)
        # What shapes the prefix tokens, as built (the config's None fields resolved).
        spec = {k: v for k, v in cfg.items() if v is not None}
        spec.update(mapping_type=mapping_type, clip_model=clip_model,
                    num_prefix=self.mapping.num_prefix, prefix_dim=self.mapping.prefix_dim,
                    normalize_input=self.mapping.normalize_input)
        self.mapping_spec = _plain(dict(sorted(spec.items())))
        if state is None:
            self.mapping_digest = f'random-init-seed{self.seed + 1}'
            print_log('CLIPTeacher: the prefix mapping network is randomly initialised.',
                      logger='current', level=logging.WARNING)
        else:
            load_clipcap_mapper(self.mapping, state, source=str(checkpoint))
            self.mapping_digest = file_sha256(checkpoint)

    def _check_clipcap_file(self, state, source: str, mapping_type: str,
                            clip_model: str) -> None:
        """The file is a ClipCap model of the configured type, made for this teacher."""
        found = clipcap_mapping_type(state) if isinstance(state, dict) else None
        if found is None:
            keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
            raise ValueError(f'mapping network file {source} is not a ClipCap model state dict '
                             f'(no clip_project.model.0.weight / clip_project.prefix_const; '
                             f'found {keys})')
        if found != mapping_type:
            raise ValueError(f'mapping network file {source} holds a ClipCap {found!r} mapper '
                             f"but teacher.mapping.mapping_type is {mapping_type!r}")
        width = clipcap_input_width(state)
        if width is not None and width != self.embed_dim:
            raise ValueError(
                f'mapping network file {source} maps CLIP embeddings of width {width}, but the '
                f'teacher {self.model_name!r} embeds in {self.embed_dim} (the mapper was made '
                f'for another CLIP than teacher.model_name)')
        # ClipCap builds every mapper on OpenAI's CLIP (clip.load), whose activation is QuickGELU.
        if not self.quick_gelu:
            raise ValueError(
                f'mapping network file {source} is a ClipCap mapper, trained on OpenAI CLIP '
                f'(QuickGELU), but teacher {self.model_name!r} (mapping.clip_model='
                f'{clip_model!r}) builds nn.GELU; use the open_clip -quickgelu name, e.g. '
                f"'ViT-B-32-quickgelu', for both")

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

    @property
    def grid_size(self) -> tuple[int, int]:
        """(rows, cols) of the patch-token grid."""
        grid = getattr(self.visual, 'grid_size', None)
        if grid is None:
            raise ValueError(f'{self.model_name}: the image tower has no patch grid')
        return int(grid[0]), int(grid[1])

    def pixels_to_grid(self, uv: torch.Tensor, image_hw: tuple[int, int] | torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels (..., 2) of an (H, W) image given to the teacher -> `grid_sample` coordinates.

        Follows `preprocess` (squash / centre crop / pad) to the teacher's input frame and
        returns (xy in [-1, 1] of that frame, align_corners=False; valid: inside it).
        Pixel centres are integers (OpenCV convention, as `pixel_uv`).
        """
        h, w = (float(v) for v in image_hw)
        th, tw = self.image_size
        if self.resize_mode == 'squash':
            nh, nw, top, left = th, tw, 0.0, 0.0
        elif self.resize_mode == 'shortest':
            scale = max(th / h, tw / w)
            nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
            top, left = -float((nh - th) // 2), -float((nw - tw) // 2)
        else:
            scale = min(th / h, tw / w)
            nh, nw = min(th, round(h * scale)), min(tw, round(w * scale))
            top, left = float((th - nh) // 2), float((tw - nw) // 2)
        # Pixel edges scale linearly: the centre u of the source lands at (u + .5) * nw / w - .5.
        x = (uv[..., 0] + 0.5) * nw / w + left
        y = (uv[..., 1] + 0.5) * nh / h + top
        xy = torch.stack([x / tw * 2 - 1, y / th * 2 - 1], dim=-1)
        valid = (xy.abs() <= 1).all(dim=-1)
        return xy, valid

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
            mapping=self.mapping_spec,
            quick_gelu=self.quick_gelu,
            resize_mode=self.resize_mode,
            interpolation=self.interpolation,
            precision=self.precision,
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
                f'quick_gelu={self.quick_gelu}, precision={self.precision}, '
                f'image_size={self.image_size}, resize_mode={self.resize_mode}, '
                f'num_prefix={self.num_prefix}')


def _weights_digest(path: str | None, seed: int, what: str) -> str:
    """A weights file's sha256, or the random-init marker of `seed` (as `CLIPTeacher` sets)."""
    if path is None:
        return f'random-init-seed{seed}'
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path!r}')
    return file_sha256(path)


def teacher_spec(cfg: dict) -> dict:
    """What a `CLIPTeacher` built from `cfg` would report, without building its network.

    Read from the open_clip model config (plus `arch_overrides`), open_clip's preprocessing
    defaults (or a 'local-dir:' folder's own) and the weights files' digests; the prefix mapper,
    if any, is built on the meta device (shapes only). Returns dict(cache_key=<equal to
    `CLIPTeacher(**cfg).cache_key()`>, embed_dim, image_size, grid_size, resize_mode,
    num_prefix, prefix_dim). Reading the cache key of a teacher-feature cache costs the
    digest of the weights file (memoised), not a ViT build.
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = dict(cfg)
    kind = cfg.pop('type', 'CLIPTeacher')
    if kind not in ('CLIPTeacher', CLIPTeacher):
        raise TypeError(f'teacher must build a CLIPTeacher, got type={kind!r}')
    model_name = cfg.get('model_name', 'ViT-B-16')
    precision = cfg.get('precision', 'fp32')
    if precision not in _PRECISIONS:
        raise ValueError(f'precision must be one of {sorted(_PRECISIONS)}, got {precision!r}')
    if model_name.startswith('hf-hub:'):
        raise ValueError(f'CLIPTeacher never downloads: use a built-in model name or '
                         f"'local-dir:<folder>' instead of {model_name!r}")
    seed = cfg.get('seed', 0)
    overrides = copy.deepcopy(cfg.get('arch_overrides')) or None
    model_cfg = open_clip.get_model_config(_canonical(model_name))
    if model_cfg is None:
        raise ValueError(f'unknown open_clip model {model_name!r}')
    if overrides:
        model_cfg = _deep_update(model_cfg, overrides)
    vision = model_cfg.get('vision_cfg', {})
    if 'timm_model_name' in vision:
        raise ValueError(f'{model_name}: the image tower is a timm model, which does not '
                         'expose patch tokens; use a ViT-based open_clip model')
    pp = dataclasses.asdict(PreprocessCfg())  # open_clip's defaults, as create_model starts
    if model_name.startswith('local-dir:'):
        folder = model_name.split(':', 1)[1]
        with open(os.path.join(folder, 'open_clip_config.json'), encoding='utf-8') as f:
            pp = merge_preprocess_dict(pp, json.load(f).get('preprocess_cfg', {}))

    def pair(v) -> tuple[int, int]:
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    image_size = pair(vision.get('image_size', 224))
    patch = pair(vision.get('patch_size', 16))
    resize_mode = cfg.get('resize_mode', 'squash') or pp.get('resize_mode', 'shortest')
    embed_dim = int(model_cfg['embed_dim'])
    mapping = cfg.get('mapping')
    mapping_spec = mapping_digest = None
    num_prefix, prefix_dim = 0, embed_dim
    if mapping is not None:
        mapping = dict(mapping)
        checkpoint = mapping.pop('checkpoint', None)
        clip_model = mapping.pop('clip_model', None)
        mapping_type = mapping.pop('mapping_type', 'mlp')
        if mapping.get('normalize_input') is None:
            mapping.pop('normalize_input', None)
        with torch.device('meta'):
            mapper = build_prefix_mapper(embed_dim, mapping_type, **mapping)
        spec = {k: v for k, v in mapping.items() if v is not None}
        spec.update(mapping_type=mapping_type, clip_model=clip_model,
                    num_prefix=mapper.num_prefix, prefix_dim=mapper.prefix_dim,
                    normalize_input=mapper.normalize_input)
        mapping_spec = _plain(dict(sorted(spec.items())))
        mapping_digest = _weights_digest(checkpoint, seed + 1, 'mapping network')
        num_prefix, prefix_dim = mapper.num_prefix, mapper.prefix_dim
    digest = _weights_digest(cfg.get('pretrained'), seed, 'CLIP weights')
    quick_gelu = bool(model_cfg.get('quick_gelu', False))
    if cfg.get('pretrained') is not None:  # the build's own early refusal, from the digest
        CLIPTeacher._check_openai_release(types.SimpleNamespace(
            weights_digest=digest, model_name=model_name, quick_gelu=quick_gelu),
            str(cfg['pretrained']))
    if mapping is not None and mapping_spec['clip_model'] is not None and \
            _canonical(mapping_spec['clip_model']) != _canonical(model_name):
        raise ValueError(f"the prefix mapper was trained on CLIP {mapping_spec['clip_model']!r} "
                         f'(teacher.mapping.clip_model) but the teacher is {model_name!r} '
                         '(teacher.model_name): use the same open_clip name for both')
    key = _plain(dict(
        model_name=model_name,
        weights_digest=digest,
        image_size=list(image_size),
        mean=[float(m) for m in pp['mean']],
        std=[float(s) for s in pp['std']],
        mapping_digest=mapping_digest,
        mapping=mapping_spec,
        quick_gelu=quick_gelu,
        resize_mode=resize_mode,
        interpolation=pp.get('interpolation', 'bicubic'),
        precision=precision,
        arch_overrides=overrides,
    ))
    return dict(cache_key=key, embed_dim=embed_dim, image_size=image_size,
                grid_size=(image_size[0] // patch[0], image_size[1] // patch[1]),
                resize_mode=resize_mode, num_prefix=num_prefix, prefix_dim=prefix_dim,
                model_name=model_name)


def teacher_cache_key(cfg: dict) -> dict:
    """`CLIPTeacher(**cfg).cache_key()` without building the network (see `teacher_spec`)."""
    return teacher_spec(cfg)['cache_key']


__all__ = ['CLIPTeacher', 'file_sha256', 'openai_release_digests', 'teacher_cache_key',
           'teacher_spec']
