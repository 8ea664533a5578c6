"""A teacher that knows something: a small open_clip image tower trained on labelled renders.

No pretrained CLIP weights exist on the machines that build this project, and a randomly
initialised teacher knows nothing worth distilling. This module trains a tiny open_clip ViT
(``RENDER_TEACHER``: ``ViT-B-16`` narrowed by ``arch_overrides``) to classify rendered views
of synthetic objects (a ShapeNet-55 layout root with ``shapenet_views/``, written by
``tools/create_object_data.py --layouts shapenet55``), and saves the *whole* open_clip model's
state dict (both towers; the text tower stays at its seeded init) as a plain weights file.
``CLIPTeacher(model_name, pretrained=<file>, arch_overrides=...)`` loads it with open_clip's
strict loader, i.e. 0 missing / 0 unexpected keys; the sidecar ``<file>.json`` holds that
teacher config (``teacher_config(path)`` reads it) and what the tower was trained on.

The classifier head is a cosine classifier on the L2-normalised embedding (CLIP's geometry):
views of one class end up close in the teacher's embedding space, which is what the
distillation loss reads. The head is not saved: the teacher is only the image tower.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The render teacher's architecture: 64 px input, 8 px patches (an 8 x 8 token grid),
# 3 blocks of width 128, 64-d embedding; a one-layer text tower only so the file is a
# complete open_clip model.
RENDER_TEACHER_MODEL = 'ViT-B-16'
RENDER_TEACHER_ARCH = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=64, layers=3, width=128, head_width=32, patch_size=8),
    text_cfg=dict(layers=1, width=32, heads=2, vocab_size=64, context_length=8))

VIEWS_DIR = 'shapenet_views'


class RenderTeacherError(ValueError):
    """Bad input to the render-teacher training (names the file or folder)."""


def label_of_view_dir(name: str) -> int:
    """Class label of a ``<synset>-<class>_<instance>`` view folder (synthetic synset
    ``9LLLLLLL`` = label L, as ``object_layouts.synthetic_synset`` writes it)."""
    synset = name.split('-', 1)[0]
    if len(synset) != 8 or not synset.isdigit() or not synset.startswith('9'):
        raise RenderTeacherError(f'{name}: not a synthetic ShapeNet-55 view folder '
                                 f'(<9LLLLLLL>-<class>_<instance>)')
    return int(synset[1:])


def read_views(folder: str | os.PathLike, max_views: int | None = None) -> np.ndarray:
    """The RGB views of one object folder (``NN.png`` listed in ``cameras.json``), (V, H, W, 3)
    uint8."""
    from PIL import Image

    folder = Path(folder)
    meta_file = folder / 'cameras.json'
    if not meta_file.is_file():
        raise RenderTeacherError(f'{meta_file}: missing (a ShapeNet-55 view folder holds '
                                 f'cameras.json and NN.png)')
    try:
        views = json.loads(meta_file.read_text())['views']
    except (ValueError, KeyError) as e:
        raise RenderTeacherError(f'{meta_file}: not a view list ({e})') from e
    if not views:
        raise RenderTeacherError(f'{meta_file}: lists no view')
    out = []
    for v in views[:max_views]:
        path = folder / v['file']
        try:
            with Image.open(path) as im:
                out.append(np.asarray(im.convert('RGB')))
        except OSError as e:
            raise RenderTeacherError(f'{path}: cannot read view image ({e})') from e
    return np.stack(out)


def load_view_dataset(root: str | os.PathLike, names: Sequence[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every view under ``<root>/shapenet_views`` (or only the folders in `names`):
    images (M, H, W, 3) uint8, labels (M,), the folder of each view."""
    base = Path(root) / VIEWS_DIR
    if not base.is_dir():
        raise RenderTeacherError(f'{base}: no view folder (write one with tools/'
                                 f'create_object_data.py --layouts shapenet55)')
    folders = sorted(p.name for p in base.iterdir() if p.is_dir()) if names is None else \
        list(names)
    if not folders:
        raise RenderTeacherError(f'{base}: holds no object view folder')
    imgs, labels, owners = [], [], []
    for name in folders:
        views = read_views(base / name)
        imgs.append(views)
        labels += [label_of_view_dir(name)] * len(views)
        owners += [name] * len(views)
    return np.concatenate(imgs), np.asarray(labels, dtype=np.int64), owners


def split_folders(root: str | os.PathLike, split: str) -> list[str]:
    """The view folders of a ShapeNet-55 split list (``ShapeNet-55/<split>.txt``)."""
    list_file = Path(root) / 'ShapeNet-55' / f'{split}.txt'
    if not list_file.is_file():
        raise RenderTeacherError(f'{list_file}: missing ShapeNet-55 split list')
    return [line.strip().removesuffix('.npy') for line in list_file.read_text().splitlines()
            if line.strip()]


def build_open_clip(seed: int, arch: dict | None = None, model_name: str = RENDER_TEACHER_MODEL
                    ) -> nn.Module:
    """The whole open_clip model of the render teacher, seeded (as CLIPTeacher builds it)."""
    import open_clip

    from concept_distill.models.distill.clip_teacher import _deep_update

    cfg = _deep_update(open_clip.get_model_config(model_name), arch or RENDER_TEACHER_ARCH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model(model_name, pretrained=None, pretrained_image=False,
                                      pretrained_text=False, **cfg)


def _normalise(imgs: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor
               ) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> squashed to size x size, normalised (CLIPTeacher's 'squash')."""
    x = imgs.float() / 255.0
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode='bicubic', align_corners=False,
                          antialias=True).clamp(0, 1)
    return (x - mean) / std


def _squash_uint8(imgs: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """(M, H, W, 3) uint8 -> (M, size, size, 3) uint8, bicubic with antialiasing."""
    if len(imgs) == 0 or imgs.shape[1:3] == (size, size):
        return imgs
    out = []
    for i in range(0, len(imgs), batch):
        x = torch.from_numpy(imgs[i:i + batch]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode='bicubic', align_corners=False,
                          antialias=True)
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def _augment(imgs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (80-100% of the side, resized back), horizontal flip, brightness: the
    views' framing and lighting must not be what identifies a class."""
    b, _, h, w = imgs.shape
    out = torch.empty_like(imgs, dtype=torch.float32)
    x = imgs.float()
    for i in range(b):
        s = float(torch.empty(()).uniform_(0.8, 1.0, generator=gen))
        ch, cw = max(8, int(h * s)), max(8, int(w * s))
        top = int(torch.randint(0, h - ch + 1, (), generator=gen))
        left = int(torch.randint(0, w - cw + 1, (), generator=gen))
        crop = x[i:i + 1, :, top:top + ch, left:left + cw]
        crop = F.interpolate(crop, size=(h, w), mode='bilinear', align_corners=False)
        if torch.rand((), generator=gen) < 0.5:
            crop = crop.flip(-1)
        gain = float(torch.empty(()).uniform_(0.8, 1.2, generator=gen))
        out[i] = (crop[0] * gain).clamp(0, 255)
    return out


class _CosineHead(nn.Module):
    """Logits = scale * cos(embedding, class prototype)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.02)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, classes)."""
        return self.log_scale.exp() * F.normalize(emb, dim=-1) @ F.normalize(self.weight,
                                                                              dim=-1).T


def teacher_config(path: str | os.PathLike) -> dict:
    """The CLIPTeacher config of a saved render teacher (from its ``<path>.json`` sidecar)."""
    side = Path(f'{path}.json')
    if not side.is_file():
        raise RenderTeacherError(f'{side}: missing (the render teacher writes its teacher '
                                 f'config beside the weights file)')
    info = json.loads(side.read_text())
    cfg = dict(info['teacher'])
    cfg['pretrained'] = str(path)
    return cfg


def _accuracy(visual: nn.Module, head: nn.Module, imgs: np.ndarray, labels: np.ndarray,
              norm, batch: int = 128) -> float:
    visual.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(imgs), batch):
            x = norm(torch.from_numpy(imgs[i:i + batch]).permute(0, 3, 1, 2))
            pred = head(visual(x)).argmax(-1)
            correct += int((pred == torch.from_numpy(labels[i:i + batch])).sum())
    visual.train()
    return correct / max(len(imgs), 1)


def train_render_teacher(root: str | os.PathLike, out: str | os.PathLike, steps: int = 300,
                         batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                         arch: dict | None = None, model_name: str = RENDER_TEACHER_MODEL,
                         overwrite: bool = False, log_every: int = 50) -> dict:
    """Train the image tower on the root's labelled train views; write ``out`` (+ ``.json``).

    Returns the summary also stored in the sidecar: the teacher config, the classes, the
    train / test view accuracies of the cosine head, the steps and the wall time.
    """
    import open_clip

    from concept_distill.checkpoint.checkpoint_io import atomic_torch_save
    from concept_distill.datasets.converters.synthetic.objects import OBJECT_CLASSES

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f'{out} exists; refusing to overwrite it (pass overwrite=True / '
                              f'--force)')
    arch = arch or RENDER_TEACHER_ARCH
    train_imgs, train_labels, _ = load_view_dataset(root, split_folders(root, 'train'))
    try:
        test_imgs, test_labels, _ = load_view_dataset(root, split_folders(root, 'test'))
    except RenderTeacherError:
        test_imgs, test_labels = train_imgs[:0], train_labels[:0]
    present = sorted(set(train_labels.tolist()))
    index = {c: i for i, c in enumerate(present)}
    train_y = np.array([index[c] for c in train_labels], dtype=np.int64)
    known = np.isin(test_labels, present)  # a class without train views cannot be scored
    test_imgs = test_imgs[known]
    test_y = np.array([index[c] for c in test_labels[known]], dtype=np.int64)

    model = build_open_clip(seed, arch, model_name)
    visual = model.visual
    pp = open_clip.get_model_preprocess_cfg(visual)
    size = int(arch['vision_cfg']['image_size'])
    mean = torch.tensor(pp['mean']).view(1, 3, 1, 1)
    std = torch.tensor(pp['std']).view(1, 3, 1, 1)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return _normalise(x, size, mean, std)

    # Squash every view to the tower's input once (as CLIPTeacher's 'squash' does per call);
    # augmentation then works at the input size.
    train_imgs, test_imgs = _squash_uint8(train_imgs, size), _squash_uint8(test_imgs, size)

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = _CosineHead(int(visual.output_dim), len(present))
    params = list(visual.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warm = max(1, steps // 10)

    def lr_at(step: int) -> float:
        if step < warm:
            return lr * (step + 1) / warm
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    visual.train()
    start = time.time()
    losses = []
    for step in range(steps):
        for g in opt.param_groups:
            g['lr'] = lr_at(step)
        idx = torch.randint(0, len(train_imgs), (min(batch_size, len(train_imgs)),),
                            generator=gen).numpy()
        x = torch.from_numpy(train_imgs[idx]).permute(0, 3, 1, 2)
        x = norm(_augment(x, gen))
        loss = F.cross_entropy(head(visual(x)), torch.from_numpy(train_y[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f'render teacher step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.3f}',
                  flush=True)
    train_acc = _accuracy(visual, head, train_imgs, train_y, norm)
    test_acc = _accuracy(visual, head, test_imgs, test_y, norm) if len(test_imgs) else None
    wall = time.time() - start

    teacher = dict(type='CLIPTeacher', model_name=model_name, arch_overrides=arch,
                   resize_mode='squash', precision='fp32')
    summary = dict(
        teacher=teacher, data_root=osp.abspath(root),
        classes=[OBJECT_CLASSES[c] if c < len(OBJECT_CLASSES) else str(c) for c in present],
        num_train_views=int(len(train_imgs)), num_test_views=int(len(test_imgs)),
        steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        first_loss=losses[0] if losses else None, last_loss=float(np.mean(losses[-10:])),
        train_view_acc=train_acc, test_view_acc=test_acc, wall_s=round(wall, 1))
    # The whole open_clip model (both towers) in eval mode: open_clip's strict loader needs
    # every key of the model the teacher config builds.
    model.eval()
    atomic_torch_save({k: v.detach().clone() for k, v in model.state_dict().items()}, str(out))
    Path(f'{out}.json').write_text(json.dumps(summary, indent=1))
    return dict(summary, path=str(out))




def create_teacher_views(out_dir: str | os.PathLike, classes: Sequence[str],
                         num_per_class: int, test_per_class: int, seed: int,
                         num_views: int = 4, image_size: int = 128) -> Path:
    """A ShapeNet-55 root of labelled renders for the teacher (instances of `seed`: pick a
    seed no pre-training or evaluation root uses). Reused when made with the same arguments
    (``output_guard.run_guarded``); any other non-empty folder is an error."""
    from concept_distill.datasets.converters.output_guard import run_guarded
    from concept_distill.datasets.converters.synthetic.synthetic_objects import (
        create_synthetic_objects,
    )

    out = Path(out_dir)
    args = dict(classes=list(classes), num_per_class=num_per_class,
                test_per_class=test_per_class, seed=seed, num_views=num_views,
                image_size=image_size)
    run_guarded(out, 'render-teacher-views', args, False, lambda: create_synthetic_objects(
        out, num_per_class=num_per_class, test_per_class=test_per_class, val_per_class=0,
        seed=seed, classes=classes, layouts=('shapenet55',), num_views=num_views,
        image_size=image_size))
    return out / 'ShapeNet55'


__all__ = ['RENDER_TEACHER_ARCH', 'RENDER_TEACHER_MODEL', 'RenderTeacherError',
           'build_open_clip', 'create_teacher_views', 'label_of_view_dir', 'load_view_dataset',
           'read_views', 'split_folders', 'teacher_config', 'train_render_teacher']
