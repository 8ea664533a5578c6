"""ConceptDistiller: backbone -> point tokens -> concepts, aligned with a frozen CLIP teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.model import BaseModel
from torch import nn

from concept_distill.evaluation.alignment_metrics import alignment_metrics
from concept_distill.models.distill.clip_teacher import CLIPTeacher
from concept_distill.models.distill.concept_alignment_loss import (
    ConceptAlignmentLoss,
    pool_concepts,
)


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
    """

    def __init__(self,
                 backbone: dict,
                 teacher: dict,
                 token_adapter: dict | None = None,
                 concept_extractor: dict | None = None,
                 loss: dict | None = None,
                 cached_tokens: str = 'patch_tokens',
                 log_alignment: bool = True,
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
        self.backbone = MODELS.build(backbone)
        self.token_adapter = MODELS.build(token_adapter or dict(type='PointNet2TokenAdapter'))

        teacher_module = MODELS.build(teacher)
        if not isinstance(teacher_module, CLIPTeacher):
            raise TypeError(f'teacher must build a CLIPTeacher, got {type(teacher_module)}')
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
    def extract_concepts(self, batch_inputs: dict,
                         data_samples: list | None = None) -> torch.Tensor:
        """Backbone -> point tokens -> transformed concept tokens (B, K, D)."""
        tokens = self.token_adapter(self.backbone, batch_inputs, data_samples)
        return self.concept_extractor(tokens)

    def teacher_targets(self, batch_inputs: dict,
                        data_samples: list | None) -> dict[str, torch.Tensor]:
        """Teacher outputs from the feature cache when every sample carries them, else online."""
        device = next(self.concept_extractor.parameters()).device
        cached = [getattr(s, 'teacher_global', None) for s in data_samples or []]
        if cached and all(c is not None for c in cached):
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

    def loss(self, inputs: dict, data_samples: list | None = None) -> dict[str, torch.Tensor]:
        """Alignment losses (and, when enabled, batch alignment metrics for the log)."""
        concepts = self.extract_concepts(inputs, data_samples)
        targets = self.teacher_targets(inputs, data_samples)
        prefix_concepts = self.prefix_head(concepts) if self.prefix_head is not None else None
        losses = self.alignment_loss(concepts, targets, prefix_concepts)
        if self.log_alignment:
            m = alignment_metrics(*self.embed_pair(pool_concepts(concepts).detach(),
                                                   targets['global']))
            losses['align_cos'] = torch.tensor(m['cos'], device=concepts.device)
            losses['align_top1'] = torch.tensor(m['top1'], device=concepts.device)
            scale = self.alignment_loss.logit_scale.detach().exp()
            losses['temperature'] = 1.0 / scale
        return losses

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
