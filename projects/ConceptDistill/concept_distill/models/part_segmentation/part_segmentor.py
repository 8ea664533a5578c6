"""Part segmentor: tokens of several blocks propagated back to every point, + the category."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmengine.model import BaseModel
from torch import nn


def three_nn_interpolate(xyz: torch.Tensor, centers: torch.Tensor, features: torch.Tensor,
                         eps: float = 1e-8) -> torch.Tensor:
    """Inverse-squared-distance blend of the features of each point's 3 nearest centres.

    xyz (B, N, 3), centers (B, G, 3), features (B, G, C) -> (B, N, C). The same weighting
    as mmcv's three_nn + three_interpolate, in plain torch (any device, differentiable in
    `features`).
    """
    k = min(3, centers.shape[1])
    d2 = torch.cdist(xyz.float(), centers.float()).pow(2)  # (B, N, G)
    dist, idx = d2.topk(k, dim=-1, largest=False)
    w = 1.0 / (dist + eps)
    w = w / w.sum(dim=-1, keepdim=True)
    b, n, _ = idx.shape
    c = features.shape[-1]
    gathered = torch.gather(features, 1, idx.reshape(b, n * k, 1).expand(-1, -1, c))
    return (gathered.reshape(b, n, k, c) * w.unsqueeze(-1).to(features)).sum(dim=2)


class _PointMLP(nn.Module):
    """Per-point (Linear -> BN -> ReLU [-> Dropout]) stack on (B, N, C) tensors."""

    def __init__(self, in_dim: int, widths: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for w in widths:
            layers += [nn.Linear(in_dim, w), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = w
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, widths[-1])."""
        b, n, c = x.shape
        return self.layers(x.reshape(b * n, c)).reshape(b, n, -1)


@MODELS.register_module()
class PointPartSegmentor(BaseModel):
    """Per-point part labels of one object of a known category (modes loss/predict/tensor).

    The tokens of `feature_blocks` (each through its own LayerNorm) are concatenated per
    patch; a global descriptor (their max and mean over the patches) joins a learned
    embedding of the one-hot object category; the patch features are projected and
    propagated to every input point by inverse-distance blending of the 3 nearest patch
    centres; a small embedding of the point itself (xyz, normals) restores detail inside a
    patch. Per point: [propagated, point embedding, global + category] -> MLP -> part logits.

    Prediction restricts each shape's argmax to the parts of its category (`part_ids` of the
    data sample's metainfo). Loss: cross-entropy over all `num_parts`.

    Args:
        backbone: backbone config (output dict of `PointPatchTransformer`).
        num_parts: part ids in all (50 for ShapeNetPart).
        num_categories: object categories (16 for ShapeNetPart).
        feature_blocks: indices of the blocks whose tokens are used (negative from the end).
        propagate_dims: width of the projected patch features before propagation.
        category_dims / point_dims: widths of the category and point embeddings.
        head_channels / dropout: the per-point MLP head.
        label_smoothing: of the cross-entropy.
        test_cfg: `return_logits=True` also stores `pred_part_logits` (N, num_parts).
    """

    def __init__(self, backbone: dict, num_parts: int = 50, num_categories: int = 16,
                 feature_blocks: Sequence[int] = (3, 7, 11), propagate_dims: int = 384,
                 category_dims: int = 64, point_dims: int = 64,
                 head_channels: Sequence[int] = (256, 128), dropout: float = 0.5,
                 label_smoothing: float = 0.0, data_preprocessor: dict | None = None,
                 test_cfg: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type='ObjectDataPreprocessor'),
                         init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        depth = getattr(self.backbone, 'depth', None)
        if depth is not None:
            bad = [b for b in feature_blocks if not -depth <= b < depth]
            if bad:
                raise ValueError(f'feature_blocks {bad} out of range for a backbone of depth '
                                 f'{depth}')
        self.feature_blocks = tuple(feature_blocks)
        self.num_parts, self.num_categories = num_parts, num_categories
        self.label_smoothing = label_smoothing
        c = self.backbone.embed_dims
        self.block_norms = nn.ModuleList(nn.LayerNorm(c) for _ in self.feature_blocks)
        cat_c = c * len(self.feature_blocks)
        self.patch_proj = nn.Linear(cat_c, propagate_dims)
        self.category_embed = nn.Sequential(nn.Linear(num_categories, category_dims),
                                            nn.GELU())
        self.global_proj = nn.Sequential(nn.Linear(2 * cat_c + category_dims, propagate_dims),
                                         nn.GELU())
        in_channels = getattr(self.backbone, 'in_channels', 3)
        self.point_embed = _PointMLP(in_channels, (point_dims, point_dims))
        self.head = _PointMLP(2 * propagate_dims + point_dims, head_channels, dropout)
        self.classifier = nn.Linear(self.head.out_dim, num_parts)
        self.test_cfg = dict(return_logits=False)
        self.test_cfg.update(test_cfg or {})

    def _categories(self, data_samples: list, device) -> torch.Tensor:
        cats = [int(s.metainfo['category']) for s in data_samples]
        bad = [c for c in cats if not 0 <= c < self.num_categories]
        if bad:
            raise ValueError(f'object categories {bad} outside num_categories='
                             f'{self.num_categories}')
        return torch.tensor(cats, dtype=torch.long, device=device)

    def seg_logits(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """points (B, N, C), category (B,) long -> part logits (B, N, num_parts)."""
        out = self.backbone(points)
        feats = torch.cat([norm(out['tokens'][b])
                           for norm, b in zip(self.block_norms, self.feature_blocks)], dim=-1)
        onehot = F.one_hot(category, self.num_categories).to(feats)
        glob = torch.cat([feats.max(dim=1).values, feats.mean(dim=1),
                          self.category_embed(onehot)], dim=-1)
        glob = self.global_proj(glob)  # (B, D)
        propagated = three_nn_interpolate(points[..., :3], out['xyz'], self.patch_proj(feats))
        n = points.shape[1]
        x = torch.cat([propagated, self.point_embed(points),
                       glob.unsqueeze(1).expand(-1, n, -1)], dim=-1)
        return self.classifier(self.head(x))

    def forward(self, inputs: dict, data_samples: list | None = None, mode: str = 'tensor'):
        """mmengine entry point: 'loss' -> loss dict, 'predict' -> data samples, 'tensor'."""
        points = inputs['points']
        category = self._categories(data_samples or [], points.device) if data_samples \
            else torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        if mode == 'tensor':
            return self.seg_logits(points, category)
        logits = self.seg_logits(points, category)
        if mode == 'loss':
            labels = torch.stack([s.gt_part for s in data_samples]).to(points.device)
            loss = F.cross_entropy(logits.reshape(-1, self.num_parts), labels.reshape(-1),
                                   label_smoothing=self.label_smoothing)
            acc = (logits.detach().argmax(-1) == labels).float().mean()
            return dict(loss_seg=loss, acc=acc)
        if mode == 'predict':
            return self._predict(logits.detach(), data_samples)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def _predict(self, logits: torch.Tensor, data_samples: list) -> list:
        for i, sample in enumerate(data_samples):
            allowed = torch.full((self.num_parts,), float('-inf'), device=logits.device)
            part_ids = sample.metainfo.get('part_ids')
            if part_ids is None:
                allowed.zero_()
            else:
                allowed[torch.as_tensor(part_ids, device=logits.device)] = 0.0
            sample.pred_part = (logits[i] + allowed).argmax(dim=-1)
            if self.test_cfg.get('return_logits'):
                sample.pred_part_logits = logits[i]
        return data_samples
