"""Object classifier: point-patch backbone -> class token and pooled tokens -> MLP head."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmengine.model import BaseModel
from torch import nn

POOLS = ('cls', 'max', 'mean')


def mlp_head(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float) -> nn.Sequential:
    """(Linear -> BN -> ReLU -> Dropout) per hidden width, then Linear to `out_dim`."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                   nn.Dropout(dropout)]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


@MODELS.register_module()
class PointClassifier(BaseModel):
    """Classifies one object cloud (mmengine modes 'loss' / 'predict' / 'tensor').

    The backbone (a `PointPatchTransformer` or any module with its output dict) gives patch
    tokens and, with `use_cls_token`, a class token; `pool` picks what the head sees: the
    class token ('cls') and the max / mean of the final tokens over the patches, concatenated.
    Loss: cross-entropy with `label_smoothing`.

    Test-time voting (`test_cfg=dict(num_votes=V)`, V > 1): logits averaged over the plain
    cloud and V - 1 copies randomly scaled per axis in `vote_scale` and shifted by up to
    `vote_translate` (generator seeded with `vote_seed`, so evaluation is repeatable). The
    plain prediction is always `pred_label` / `pred_score`; the vote goes to
    `pred_label_vote` / `pred_score_vote`, so the two are never mixed.

    Args:
        backbone: config of the backbone (its `embed_dims` sets the head's input width).
        num_classes: number of classes.
        pool: subset of ('cls', 'max', 'mean').
        head_channels: hidden widths of the MLP head.
        dropout: dropout in the head.
        label_smoothing: of the cross-entropy.
    """

    def __init__(self, backbone: dict, num_classes: int, pool: Sequence[str] = ('cls', 'max'),
                 head_channels: Sequence[int] = (256, 256), dropout: float = 0.5,
                 label_smoothing: float = 0.2, data_preprocessor: dict | None = None,
                 test_cfg: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type='ObjectDataPreprocessor'),
                         init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        unknown = [p for p in pool if p not in POOLS]
        if unknown or not pool:
            raise ValueError(f'pool must be a non-empty subset of {POOLS}, got {pool!r}')
        if 'cls' in pool and not getattr(self.backbone, 'use_cls_token', False):
            raise ValueError("pool includes 'cls' but the backbone has no class token "
                             '(set use_cls_token=True or drop it from pool)')
        self.pool = tuple(pool)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        dims = self.backbone.embed_dims
        self.head = mlp_head(dims * len(self.pool), head_channels, num_classes, dropout)
        self.test_cfg = dict(num_votes=1, vote_scale=(2.0 / 3.0, 1.5), vote_translate=0.2,
                             vote_seed=0)
        self.test_cfg.update(test_cfg or {})

    def extract_feat(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, C) -> pooled descriptor (B, len(pool) * embed_dims)."""
        out = self.backbone(points)
        tokens = out['features']
        parts = {'cls': out.get('cls'), 'max': tokens.max(dim=1).values,
                 'mean': tokens.mean(dim=1)}
        return torch.cat([parts[p] for p in self.pool], dim=-1)

    def logits(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, C) -> class logits (B, num_classes)."""
        return self.head(self.extract_feat(points))

    def forward(self, inputs: dict, data_samples: list | None = None,
                mode: str = 'tensor'):
        """mmengine entry point: 'loss' -> loss dict, 'predict' -> data samples, 'tensor'."""
        points = inputs['points']
        if mode == 'tensor':
            return self.logits(points)
        if mode == 'loss':
            return self.loss(points, data_samples)
        if mode == 'predict':
            return self.predict(points, data_samples)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, points: torch.Tensor, data_samples: list) -> dict:
        """Label-smoothed cross-entropy (and the batch accuracy, for the log)."""
        labels = torch.cat([s.gt_label for s in data_samples]).to(points.device)
        logits = self.logits(points)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(dim=1) == labels).float().mean()
        return dict(loss_cls=loss, acc=acc)

    def _vote_copy(self, points: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        lo, hi = self.test_cfg['vote_scale']
        t = self.test_cfg['vote_translate']
        b = points.shape[0]
        scale = torch.empty(b, 1, 3).uniform_(lo, hi, generator=gen).to(points)
        shift = torch.empty(b, 1, 3).uniform_(-t, t, generator=gen).to(points)
        out = points.clone()
        out[..., :3] = points[..., :3] * scale + shift
        if points.shape[-1] >= 6:  # normals follow the anisotropic scale
            n = points[..., 3:6] / scale
            out[..., 3:6] = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return out

    @torch.no_grad()
    def predict(self, points: torch.Tensor, data_samples: list) -> list:
        """Set `pred_score` / `pred_label` (and the `_vote` pair with num_votes > 1)."""
        logits = self.logits(points)
        votes = int(self.test_cfg['num_votes'])
        vote_logits = None
        if votes > 1:
            gen = torch.Generator().manual_seed(int(self.test_cfg['vote_seed']))
            total = logits.clone()
            for _ in range(votes - 1):
                total += self.logits(self._vote_copy(points, gen))
            vote_logits = total / votes
        for i, sample in enumerate(data_samples):
            sample.pred_score = logits[i].softmax(-1)
            sample.pred_label = logits[i].argmax().view(1)
            if vote_logits is not None:
                sample.pred_score_vote = vote_logits[i].softmax(-1)
                sample.pred_label_vote = vote_logits[i].argmax().view(1)
        return data_samples
