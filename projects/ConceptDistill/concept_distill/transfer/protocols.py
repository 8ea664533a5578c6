"""The transfer protocols on object clouds: linear probe and few-label fine-tuning.

Both use the project's `PointClassifier` (max + mean of the final patch tokens -> MLP head):
the linear probe fits scikit-learn's logistic regression on the frozen backbone's pooled
features; fine-tuning trains backbone and head with the object recipe's optimiser (AdamW,
no weight decay on norms / biases, linear warm-up then cosine) and augmentation (per-axis
scale 2/3-3/2, shift +-0.2), for a fixed number of steps.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

POOL = ('max', 'mean')


def label_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified `fraction` of the labelled objects (sorted).

    Each class keeps ``max(1, round(fraction * n_class))`` of its objects, drawn with a
    generator seeded by (seed, class), so 1% of a small set still has one label per class
    and the subsets of one seed are the same for every backbone."""
    if not 0 < fraction <= 1:
        raise ValueError(f'label fraction must be in (0, 1], got {fraction}')
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(idx))))
        rng = np.random.default_rng([seed, int(c)])
        out.append(rng.choice(idx, k, replace=False))
    return np.sort(np.concatenate(out))


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the (sorted) keys and tensor bytes of a state dict: which weights ran."""
    sha = hashlib.sha256()
    for k in sorted(state):
        sha.update(k.encode())
        sha.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def build_classifier(backbone_cfg: Mapping, num_classes: int, seed: int,
                     backbone_state: Mapping[str, torch.Tensor] | None = None,
                     head_channels: Sequence[int] = (128,), dropout: float = 0.5,
                     label_smoothing: float = 0.2) -> nn.Module:
    """A `PointClassifier` over `backbone_cfg`, initialised from `seed` (RNG-isolated); the
    backbone then loads `backbone_state` strictly (0 missing / 0 unexpected keys)."""
    from mmdet3d.registry import MODELS
    from mmengine.registry import DefaultScope

    import concept_distill  # noqa: F401  (registers the object-track models)

    cfg = dict(backbone_cfg)
    cfg.pop('init_cfg', None)
    # The classifier builds its data preprocessor through mmengine's root registry, which
    # finds mmdet3d's (and the project's) modules only under the mmdet3d scope.
    with torch.random.fork_rng(devices=[]), DefaultScope.overwrite_default_scope('mmdet3d'):
        torch.manual_seed(seed)
        model = MODELS.build(dict(type='PointClassifier', backbone=cfg, num_classes=num_classes,
                                  pool=POOL, head_channels=tuple(head_channels),
                                  dropout=dropout, label_smoothing=label_smoothing))
    if backbone_state is not None:
        model.backbone.load_state_dict(dict(backbone_state), strict=True)
    return model


@torch.no_grad()
def pooled_features(model: nn.Module, points: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Frozen (eval-mode) pooled backbone features (N, len(POOL) * C) of clouds (N, P, 3)."""
    model.eval()
    out = [model.extract_feat(points[i:i + batch_size]) for i in range(0, len(points),
                                                                       batch_size)]
    return torch.cat(out).numpy()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, c: float = 1.0) -> float:
    """Overall accuracy of a standardised L2 logistic regression (scikit-learn) on features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        raise ValueError('the linear probe needs labels of at least 2 classes')
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == test_y).mean())


def _augment(points: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-cloud random per-axis scale in [2/3, 3/2] and shift in [-0.2, 0.2] (the recipe's)."""
    b = points.shape[0]
    scale = torch.empty(b, 1, 3).uniform_(2.0 / 3.0, 1.5, generator=gen)
    shift = torch.empty(b, 1, 3).uniform_(-0.2, 0.2, generator=gen)
    return points * scale + shift


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on norms and biases (1-d parameters), as the object recipe."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, points: torch.Tensor, batch_size: int = 32) -> None:
    """Re-estimate every BatchNorm's running statistics on the (unaugmented) training clouds
    with the final weights ("precise BN"): one pass per BatchNorm, in module order, as a
    cumulative average, with the layers before it already recalibrated and in eval mode, so
    each one gets the statistics it sees at test time.

    The exponential averages kept during a short fine-tune mix statistics of weights that
    have since moved; for a backbone whose pooled features differ little between objects
    (a random one), a head BatchNorm normalising with those stale statistics maps every test
    cloud to one class (measured: 100% test accuracy with batch statistics, chance with the
    running ones, after 60 steps). Only training clouds are read; no dropout runs."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    bs = max(2, min(batch_size, len(points)))
    for bn in bns:
        momentum = bn.momentum
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the pass
        bn.train()
        for i in range(0, len(points), bs):
            chunk = points[i:i + bs]
            if len(chunk) < 2:  # BatchNorm needs 2 samples: fold a last single cloud in
                chunk = points[-bs:]
            model.logits(chunk)
        bn.momentum = momentum
        bn.eval()


@torch.no_grad()
def accuracy(model: nn.Module, points: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 64) -> float:
    """Overall accuracy of the classifier (eval mode) on clouds (N, P, 3)."""
    model.eval()
    pred = torch.cat([model.logits(points[i:i + batch_size]).argmax(-1)
                      for i in range(0, len(points), batch_size)])
    return float((pred == labels).float().mean())


def finetune(model: nn.Module, points: torch.Tensor, labels: torch.Tensor, seed: int,
             steps: int = 100, batch_size: int = 32, lr: float = 5e-4,
             weight_decay: float = 0.05) -> list[float]:
    """Fine-tune the whole classifier for `steps` steps on (points, labels); returns losses.

    Batches are drawn epoch by epoch from a permutation seeded by `seed` (a set smaller than
    the batch is one batch); BatchNorm needs at least 2 clouds per batch. The global torch
    RNG (dropout, the backbone's own sampling) is seeded with `seed` too, inside a forked RNG
    state, so a run depends on its seed only, not on what ran before it. The BatchNorm
    statistics are then re-estimated on the training clouds (`recalibrate_batchnorm`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _finetune(model, points, labels, seed, steps, batch_size, lr, weight_decay)


def _finetune(model: nn.Module, points: torch.Tensor, labels: torch.Tensor, seed: int,
              steps: int, batch_size: int, lr: float, weight_decay: float) -> list[float]:
    n = len(points)
    if n < 2:
        raise ValueError('fine-tuning needs at least 2 labelled objects')
    bs = min(batch_size, n)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr)
    warm = max(1, steps // 10)
    model.train()
    losses, order = [], torch.empty(0, dtype=torch.long)
    for step in range(steps):
        scale = (step + 1) / warm if step < warm else \
            0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for g in opt.param_groups:
            g['lr'] = lr * scale
        if len(order) < bs:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:bs], order[bs:]
        logits = model.logits(_augment(points[idx], gen))
        loss = F.cross_entropy(logits, labels[idx], label_smoothing=model.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        losses.append(float(loss.detach()))
    recalibrate_batchnorm(model, points, batch_size)
    return losses


__all__ = ['POOL', 'accuracy', 'build_classifier', 'finetune', 'label_subset', 'linear_probe',
           'pooled_features', 'recalibrate_batchnorm', 'state_digest']
