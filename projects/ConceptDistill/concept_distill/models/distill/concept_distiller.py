"""ConceptDistiller: backbone -> point tokens -> concepts, aligned with a frozen CLIP teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.model import BaseModel
from torch import nn

from concept_distill.evaluation.alignment_metrics import alignment_metrics
from concept_distill.models.distill.concept_alignment_loss import (
    ConceptAlignmentLoss,
    pool_concepts,
    sample_patch_features,
)
from concept_distill.models.distill.lazy_teacher import LazyCLIPTeacher
from concept_distill.models.distill.point_tokens import PointTokens

# Rows of the token-to-point distance matrix computed at once (memory ~ rows x points).
_NN_CHUNK_ELEMENTS = 1 << 24


def nearest_point_index(query: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Index (N,) into `points` (M, 3) of the point nearest to each query (N, 3)."""
    rows = max(1, _NN_CHUNK_ELEMENTS // max(points.shape[0], 1))
    return torch.cat([torch.cdist(query[i:i + rows], points).argmin(dim=1)
                      for i in range(0, query.shape[0], rows)])


def _autocast_off(device: torch.device) -> torch.autocast:
    """A region where autocast (AMP) is off on ``device``'s type."""
    return torch.autocast(device_type=device.type, enabled=False)


def _float(x: torch.Tensor | None) -> torch.Tensor | None:
    """float32 copy of a floating tensor (None stays None)."""
    return x.float() if x is not None and x.is_floating_point() else x


def _random_teacher_error(key: str, what: str) -> ValueError:
    """The refusal of a real recipe to distil from a random teacher."""
    return ValueError(
        f'{key} is not set: {what} would be randomly initialised, and a pre-training run '
        f'would distil noise. Give the local file ({key}=/path/to/file), or set '
        f'model.allow_random_teacher=True to run with a random teacher on purpose (tests, '
        f'the demo).')


@MODELS.register_module()
class ConceptDistiller(BaseModel):
    """Pre-training model: only `backbone.*` transfers downstream.

    Args:
        backbone: any registered backbone config (e.g. VoteNet's PointNet2SASSG).
        teacher: `CLIPTeacher` config. The teacher is held *outside* the registered modules:
            its parameters are not in `parameters()` / `state_dict()`, so no optimizer ever
            receives them and checkpoints stay small (the teacher is rebuilt from its config and
            weights file, whose digest is recorded). `.to()` / `.cuda()` still move it.
        token_adapter: adapter that runs the backbone and returns `PointTokens`.
        concept_extractor: `ConceptExtractor` config (`in_channels` and `out_dim` default to the
            adapter's width and the teacher's embedding width).
        loss: `ConceptAlignmentLoss` config.
        cached_tokens: what the cache's `teacher_tokens` are: 'patch_tokens' or 'prefix_tokens'.
        log_alignment: add batch `align_cos` / `align_top1` to the loss dict (logged by mmengine;
            the distillation hook switches it).
        allow_random_teacher: build even when `teacher.pretrained` (or a configured mapper's
            `teacher.mapping.checkpoint`) is None, i.e. distil from a random network. False by
            default, so a real recipe without weights stops at build; tests and the demo set
            True.
        dense_hidden: hidden width of the dense head (point-token width -> D) used by the
            loss's dense term; None: a single Linear.
    """

    def __init__(self,
                 backbone: dict,
                 teacher: dict,
                 token_adapter: dict | None = None,
                 concept_extractor: dict | None = None,
                 loss: dict | None = None,
                 cached_tokens: str = 'patch_tokens',
                 log_alignment: bool = True,
                 allow_random_teacher: bool = False,
                 dense_hidden: int | None = None,
                 data_preprocessor: dict | nn.Module | None = None,
                 init_cfg: dict | None = None) -> None:
        if data_preprocessor is None:
            # Collates the point lists and stacks the images (mean/std None: the teacher
            # normalises with its own open_clip config).
            data_preprocessor = dict(type='Det3DDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # Build through mmdet3d's registry so the preprocessor resolves without a default
            # scope (mmengine's BaseModel would use the root registry).
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if cached_tokens not in ('patch_tokens', 'prefix_tokens'):
            raise ValueError(f"cached_tokens must be 'patch_tokens' or 'prefix_tokens', got "
                             f'{cached_tokens!r}')
        self.cached_tokens = cached_tokens
        self.log_alignment = log_alignment
        self.allow_random_teacher = allow_random_teacher
        if not allow_random_teacher:
            # Checked before the teacher is built: a random ViT-B costs seconds and warns.
            if teacher.get('pretrained') is None:
                raise _random_teacher_error('model.teacher.pretrained', 'the CLIP teacher')
            mapping = teacher.get('mapping')
            if mapping is not None and mapping.get('checkpoint') is None:
                raise _random_teacher_error('model.teacher.mapping.checkpoint',
                                            'the prefix mapping network')
        self.backbone = MODELS.build(backbone)
        self.token_adapter = MODELS.build(token_adapter or dict(type='PointNet2TokenAdapter'))
        # Backbone parts the adapter never reads get no gradient; frozen, they do not break
        # DDP (find_unused_parameters=False) and are not updated, as in one process.
        freeze_unused = getattr(self.token_adapter, 'freeze_unused', None)
        if freeze_unused is not None:
            freeze_unused(self.backbone)

        # Built on first use (lazy_teacher.py): a run on cached features never builds it.
        teacher_module = LazyCLIPTeacher(teacher)
        # Plain attribute, not a submodule: see the class docstring.
        object.__setattr__(self, 'teacher', teacher_module)

        extractor = dict(concept_extractor or dict(type='ConceptExtractor'))
        extractor.setdefault('in_channels', self.token_adapter.out_channels)
        extractor.setdefault('out_dim', teacher_module.embed_dim)
        if extractor['out_dim'] != teacher_module.embed_dim:
            raise ValueError(f'concept_extractor.out_dim={extractor["out_dim"]} but the teacher '
                             f'{teacher_module.model_name} embeds in {teacher_module.embed_dim}')
        self.concept_extractor = MODELS.build(extractor)
        loss = dict(loss or dict(type='ConceptAlignmentLoss'))
        if loss.get('type') in ('ConceptAlignmentLoss', ConceptAlignmentLoss):
            loss.setdefault('embed_dim', teacher_module.embed_dim)
        self.alignment_loss = MODELS.build(loss)
        if hasattr(self.alignment_loss, 'resolve_concept_target'):
            self.alignment_loss.resolve_concept_target(teacher_module.num_prefix > 0)

        self.prefix_head = None
        if 'prefix_tokens' in self.alignment_loss.needs:
            k_teacher = teacher_module.num_prefix
            k_student = self.concept_extractor.num_concepts
            if k_teacher and k_teacher != k_student:
                raise ValueError(f'token-wise alignment pairs concept k with prefix token k: '
                                 f'num_concepts={k_student} but the mapper has num_prefix='
                                 f'{k_teacher}')
            if teacher_module.prefix_dim != teacher_module.embed_dim:
                self.prefix_head = nn.Linear(teacher_module.embed_dim, teacher_module.prefix_dim)

        # Dense term: point token (C) -> D, pre-training only (not under `backbone.`).
        self.dense_head = None
        if getattr(self.alignment_loss, 'dense_weight', 0):
            width, dim = self.token_adapter.out_channels, teacher_module.embed_dim
            self.dense_head = (nn.Linear(width, dim) if dense_hidden is None else
                               nn.Sequential(nn.Linear(width, dense_hidden), nn.GELU(),
                                             nn.Linear(dense_hidden, dim)))

    # -- the frozen teacher follows the model across devices but never trains -------------
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> ConceptDistiller:
        """Switch the student's mode; the teacher stays in eval."""
        super().train(mode)
        self.teacher.train(False)
        return self

    # -- forward ---------------------------------------------------------------------------
    def extract(self, batch_inputs: dict,
                data_samples: list | None = None) -> tuple[PointTokens, torch.Tensor]:
        """Backbone -> point tokens, and the transformed concept tokens (B, K, D)."""
        tokens = self.token_adapter(self.backbone, batch_inputs, data_samples)
        return tokens, self.concept_extractor(tokens)

    def extract_concepts(self, batch_inputs: dict,
                         data_samples: list | None = None) -> torch.Tensor:
        """Backbone -> point tokens -> transformed concept tokens (B, K, D)."""
        return self.extract(batch_inputs, data_samples)[1]

    @staticmethod
    def _cached(data_samples: list | None) -> bool:
        """True when every sample carries cached teacher embeddings."""
        cached = [getattr(s, 'teacher_global', None) for s in data_samples or []]
        return bool(cached) and all(c is not None for c in cached)

    def teacher_targets(self, batch_inputs: dict,
                        data_samples: list | None) -> dict[str, torch.Tensor]:
        """Teacher outputs from the feature cache when every sample carries them, else online."""
        device = next(self.concept_extractor.parameters()).device
        if self._cached(data_samples):
            cached = [s.teacher_global for s in data_samples]
            targets = {'global': torch.stack([torch.as_tensor(c) for c in cached])}
            tokens = [getattr(s, 'teacher_tokens', None) for s in data_samples]
            if all(t is not None for t in tokens):
                targets[self.cached_tokens] = torch.stack([torch.as_tensor(t) for t in tokens])
            return {k: v.to(device=device, dtype=torch.float32) for k, v in targets.items()}
        imgs = batch_inputs.get('imgs')
        if imgs is None:
            raise KeyError('ConceptDistiller: no teacher targets: the data samples carry no '
                           "cached `teacher_global` and the inputs hold no images ('img' in "
                           'the packed inputs)')
        # The teacher runs in its own `precision`, also inside an AMP step: autocast would
        # recast its matmuls, and the targets would differ from a cache's (made without AMP).
        with _autocast_off(device):
            return self.teacher(imgs)

    def embed_pair(self, student: torch.Tensor,
                   teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Student / teacher unit embeddings in the space the contrastive loss compares."""
        if hasattr(self.alignment_loss, 'embed_pair'):
            return self.alignment_loss.embed_pair(student, teacher)
        return F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)

    def forward(self, inputs: dict, data_samples: list | None = None,
                mode: str = 'tensor') -> dict | list | torch.Tensor:
        """mode 'loss': loss dict; 'predict': samples with embeddings; 'tensor': concepts."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_concepts(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}": use loss, predict or tensor')

    def dense_pairs(self, tokens: PointTokens, inputs: dict, data_samples: list,
                    patch_tokens: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(student (B,N,D), CLIP patch feature at each token's pixel (B,N,D), valid (B,N)).

        A token's pixel is the `pixel_uv` of the input point nearest to it (exact for the
        project's adapters, whose tokens sit on input points); tokens outside the teacher's
        view (a crop) or padded are not valid.
        """
        if data_samples is None or any(getattr(s, 'pixel_uv', None) is None
                                       for s in data_samples):
            raise KeyError('the dense term needs data_samples[i].pixel_uv (FrustumPointPairing + '
                           'PackPairedInputs in the pipeline)')
        points = inputs['points']
        cached = self._cached(data_samples)
        imgs = inputs.get('imgs')
        xy, valid = [], []
        for i, sample in enumerate(data_samples):
            uv = sample.pixel_uv.to(tokens.xyz.device)
            pts = points[i][:, :3].to(tokens.xyz.dtype)
            if uv.shape[0] != pts.shape[0]:
                raise ValueError(f'sample {i}: {uv.shape[0]} pixel_uv for {pts.shape[0]} points')
            uv = uv[nearest_point_index(tokens.xyz[i], pts)]
            # The image the teacher saw: the (padded) batch image online, the frame's own
            # shape for cached features (the cache ran the teacher per frame).
            hw = (imgs.shape[-2:] if imgs is not None and not cached
                  else sample.metainfo['img_shape'][:2])
            grid_xy, inside = self.teacher.pixels_to_grid(uv, hw)
            xy.append(grid_xy)
            valid.append(inside)
        xy, valid = torch.stack(xy), torch.stack(valid)
        if tokens.mask is not None:
            valid = valid & tokens.mask
        target = sample_patch_features(patch_tokens.to(xy.dtype), self.teacher.grid_size, xy)
        return self.dense_head(tokens.feats), target, valid

    def loss(self, inputs: dict, data_samples: list | None = None) -> dict[str, torch.Tensor]:
        """Alignment losses (and, when enabled, batch alignment metrics for the log)."""
        tokens, concepts = self.extract(inputs, data_samples)
        targets = self.teacher_targets(inputs, data_samples)
        prefix_concepts = self.prefix_head(concepts) if self.prefix_head is not None else None
        dense = None
        if self.dense_head is not None and targets.get('patch_tokens') is not None:
            dense = self.dense_pairs(tokens, inputs, data_samples, targets['patch_tokens'])
        # The losses run in float32 also under AMP: InfoNCE multiplies cosines by up to 100,
        # so bf16's 3 digits would move logits by ~0.4; the network stays in low precision.
        concepts, prefix_concepts = concepts.float(), _float(prefix_concepts)
        if dense is not None:
            dense = tuple(_float(t) for t in dense)
        with _autocast_off(concepts.device):
            losses = self.alignment_loss(concepts, targets, prefix_concepts, dense)
        if self.log_alignment:
            m = alignment_metrics(*self.embed_pair(pool_concepts(concepts).detach(),
                                                   targets['global']))
            losses['align_cos'] = torch.tensor(m['cos'], device=concepts.device)
            losses['align_top1'] = torch.tensor(m['top1'], device=concepts.device)
            losses['temperature'] = self.temperature()
        return losses

    def temperature(self) -> torch.Tensor:
        """The contrastive temperature the loss applies (its clamp included), for the log."""
        if hasattr(self.alignment_loss, 'temperature'):
            return self.alignment_loss.temperature()
        return 1.0 / self.alignment_loss.logit_scale.detach().exp()

    def predict(self, inputs: dict, data_samples: list | None = None) -> list:
        """Samples with `student_embedding` / `teacher_embedding` (D; unit vectors in the space
        the contrastive term compares, i.e. centred when target centring is on) and the
        transformed `concepts` (K, D)."""
        concepts = self.extract_concepts(inputs, data_samples)
        targets = self.teacher_targets(inputs, data_samples)
        student, teacher = self.embed_pair(pool_concepts(concepts), targets['global'])
        if data_samples is None:
            data_samples = [Det3DDataSample() for _ in range(concepts.shape[0])]
        for i, sample in enumerate(data_samples):
            sample.student_embedding = student[i].detach()
            sample.teacher_embedding = teacher[i].detach()
            sample.concepts = concepts[i].detach()
        return data_samples
