"""Which point tokens each concept reads: the extractor's cross-attention on one sample."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from torch import nn

from concept_distill.visualization.pyplot import pyplot
from concept_distill.visualization.trained_model import build_trained_model


def concept_attention(model: nn.Module, sample: dict, layer: int = -1
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Token positions (N, 3) and concept-to-token attention (K, N) of one dataset sample.

    ``model`` is a ``ConceptDistiller`` (backbone, token adapter, concept extractor); the
    attention is layer ``layer``'s, averaged over heads, through
    ``ConceptExtractor.forward(..., return_attention=True)``. Padded tokens are dropped.
    """
    from mmengine.dataset import pseudo_collate

    batch = model.data_preprocessor(pseudo_collate([sample]), False)
    with torch.no_grad():
        tokens = model.token_adapter(model.backbone, batch['inputs'], batch['data_samples'])
        _, maps = model.concept_extractor(tokens, return_attention=True)
    xyz, weights = tokens.xyz[0], maps[layer][0]
    if tokens.mask is not None:
        xyz, weights = xyz[tokens.mask[0]], weights[:, tokens.mask[0]]
    return xyz.cpu().numpy(), weights.float().cpu().numpy()


def plot_concept_attention(xyz: np.ndarray, weights: np.ndarray, path: str | Path,
                           image_path: str | None = None, title: str = '',
                           show: int = 4) -> Path:
    """The frame, the dominant concept of every token (top-down) and the ``show`` concepts
    with the strongest peaks, each as a top-down attention map."""
    from PIL import Image

    plt = pyplot()
    k = weights.shape[0]
    owner = weights.argmax(0)
    show = min(show, k)
    strongest = np.argsort(-weights.max(1))[:show]
    fig, grid = plt.subplots(2, 3, figsize=(13, 8.5))
    axes = list(grid.flat)
    for ax in axes[2 + show:]:
        ax.axis('off')
    if image_path and os.path.exists(image_path):
        axes[0].imshow(Image.open(image_path))
    axes[0].set_title(title)
    axes[0].axis('off')
    cmap = plt.get_cmap('tab20', k)
    axes[1].scatter(xyz[:, 0], xyz[:, 1], c=owner, cmap=cmap, s=6, vmin=0, vmax=k - 1)
    axes[1].set_title(f'dominant concept per point token\n({k} concepts, top-down)')
    axes[1].set_aspect('equal')
    for ax, c in zip(axes[2:], strongest):
        ax.scatter(xyz[:, 0], xyz[:, 1], c=weights[c], cmap='magma', s=6)
        ax.set_title(f'concept {c}: attention')
        ax.set_aspect('equal')
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def concept_attention_figure(cfg: Config, checkpoint: str, path: str | Path, index: int = 0,
                             trusted: bool = False) -> Path:
    """Draw the last layer's attention of ``cfg``'s distiller with ``checkpoint``'s weights on
    sample ``index`` of its val dataset (``trusted``: see ``build_trained_model``)."""
    from mmdet3d.registry import DATASETS

    # strict=False: the figure needs only the backbone, token adapter and concept extractor.
    model = build_trained_model(cfg.model, checkpoint, trusted=trusted, strict=False)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    xyz, weights = concept_attention(model, dataset[index])
    info = dataset.get_data_info(index)
    return plot_concept_attention(xyz, weights, path, info.get('img_path'),
                                  f'frame {info.get("frame_id", "")}')
