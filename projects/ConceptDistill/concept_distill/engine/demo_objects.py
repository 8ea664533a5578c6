"""The demo's object track (after the scene track of ``concept_distill.engine.demo``): does
pre-training teach the point-patch transformer something a random one lacks, on objects it
never saw?

  1. synthetic pre-training objects with rendered views (tools/create_object_data.py),
  2. held-out objects, other instances, for the transfer benchmark (same tool, another seed),
  3. the teacher's embeddings of every view (tools/extract_teacher_features.py),
  4. object pre-training (tools/train.py, configs/demo/pretrain_ppt_objects_synthetic.py),
  5. the backbone export (tools/export_backbone.py),
  6. the transfer table: linear probe and few-label fine-tuning, pre-trained vs scratch, plus
     the teacher's own linear probe, over seeds (tools/transfer.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

OBJECT_PRETRAIN_CFG = 'configs/demo/pretrain_ppt_objects_synthetic.py'
# Six distinct furniture classes, few enough for CPU minutes (they saturate the table; the
# benchmark, tools/transfer.py, uses all 18 by default).
OBJECT_CLASSES = ('chair', 'table', 'sofa', 'bed', 'bookshelf', 'toilet')
# Instances depend only on (data seed, class, number): distinct seeds, disjoint objects.
PRETRAIN_OBJECTS_SEED = 2000
HELDOUT_OBJECTS_SEED = 3000
# Label fractions of the demo's table: with ~10 labelled objects per class, 1% and 10% both
# round to one label per class, so the demo steps through 1, 3 and all labels per class.
DEMO_FRACTIONS = (0.1, 0.3, 1.0)


def object_sizes(scale: float) -> dict[str, Any]:
    """The object track's sizes at ``scale`` (1.0: about 3-4 min on 2 cores; small scales keep
    a working minimum: 3 seeds, 2 objects per class to test)."""
    s = scale
    return dict(
        object_classes=list(OBJECT_CLASSES), object_pretrain_per_class=max(3, round(10 * s)),
        object_views=max(1, round(2 * s)), object_pretrain_iters=max(4, round(40 * s)),
        heldout_train_per_class=max(3, round(10 * s)),
        heldout_test_per_class=max(2, round(5 * s)), transfer_seeds=[0, 1, 2],
        transfer_fractions=list(DEMO_FRACTIONS), transfer_points=512,
        finetune_steps=max(2, round(15 * s)))


def _flat_options(prefix: str, tree: dict) -> list[str]:
    """``prefix.a.b=value`` --cfg-options for every leaf of a nested dict."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _flat_options(f'{prefix}.{key}', value)
        else:
            out.append(f'{prefix}.{key}={value}')
    return out


def teacher_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The object track's teacher, the same in pre-training and in the transfer table's
    reference row: --clip-weights (``args.clip_model`` at its own size) when given, else the
    render teacher's small architecture (``transfer.RENDER_TEACHER_ARCH``, 64 px), randomly
    initialised: a random ViT-B-16 at 224 px costs minutes of CPU and knows no more.

    Returns cfg_options and transform_options for the pre-training config, tools/transfer.py's
    teacher arguments, the views' render size and a description."""
    if args.clip_weights:
        weights = str(Path(args.clip_weights).resolve())
        return dict(cfg=[f'model.teacher.model_name={args.clip_model}',
                         f'model.teacher.pretrained={weights}'], transforms=[],
                    transfer=['--teacher', weights, '--teacher-model', args.clip_model],
                    image_size=128, name=f'{args.clip_model} from {args.clip_weights}')
    from concept_distill.transfer.render_teacher import RENDER_TEACHER_ARCH, RENDER_TEACHER_MODEL

    size = RENDER_TEACHER_ARCH['vision_cfg']['image_size']
    return dict(cfg=[f'model.teacher.model_name={RENDER_TEACHER_MODEL}',
                     *_flat_options('model.teacher.arch_overrides', RENDER_TEACHER_ARCH),
                     'model.allow_random_teacher=True'],
                transforms=[f'ResizeCropForTeacher.size=({size},{size})',
                            f'LoadTeacherFeatures.preprocessing.size=({size},{size})'],
                transfer=['--teacher', 'random'], image_size=size,
                name=f'random {RENDER_TEACHER_MODEL} narrowed to the render-teacher '
                     f'architecture ({size} px), seed 0')


def object_track(args: argparse.Namespace, out: Path, stage_cls: type,
                 py: str) -> tuple[list[Any], dict[str, Any]]:
    """The object track's stages (``stage_cls(name, cmd, log)``, run from the repository
    root) and what they use."""
    from concept_distill.engine.demo import pretrain_options

    sz = object_sizes(args.scale)
    objects = out / 'objects'
    pre_root, heldout_root = objects / 'pretrain', objects / 'heldout'
    cache = out / 'object_teacher_cache'
    work = out / 'object_pretrain'
    iters = sz['object_pretrain_iters']
    ckpt, export = work / f'iter_{iters}.pth', work / 'backbone_exported.pth'
    teacher = teacher_arguments(args)
    pre_opts = pretrain_options(pre_root / 'ShapeNet55', iters, args.seed, teacher['cfg'])
    transforms = ['--transform-options', f'LoadTeacherFeatures.cache_dir={cache}',
                  *teacher['transforms']]
    render = ['--num-points', '4096', '--image-size', str(teacher['image_size'])]
    classes = ['--classes', *sz['object_classes']]
    logs = out / 'logs'
    stages = [
        stage_cls('Generate synthetic pre-training objects with rendered views', [
            py, 'tools/create_object_data.py', '--out-dir', str(pre_root), *classes,
            '--layouts', 'shapenet55', '--num-per-class', str(sz['object_pretrain_per_class']),
            '--test-per-class', '1', '--num-views', str(sz['object_views']),
            *render, '--seed', str(PRETRAIN_OBJECTS_SEED + args.seed)],
            logs / 'objects_pretrain.log'),
        stage_cls('Generate held-out objects (other instances) for the transfer table', [
            py, 'tools/create_object_data.py', '--out-dir', str(heldout_root), *classes,
            '--layouts', 'modelnet40', 'shapenet55',
            '--num-per-class',
            str(sz['heldout_train_per_class'] + sz['heldout_test_per_class']),
            '--test-per-class', str(sz['heldout_test_per_class']),
            '--num-views', str(sz['object_views']),
            *render, '--seed', str(HELDOUT_OBJECTS_SEED + args.seed)],
            logs / 'objects_heldout.log'),
        stage_cls("Cache the teacher's embeddings of every object view", [
            py, 'tools/extract_teacher_features.py', OBJECT_PRETRAIN_CFG, '--tokens', 'patch',
            '--cache-dir', str(cache), '--cfg-options', *pre_opts, *transforms],
            logs / 'object_teacher_cache.log'),
        stage_cls('Pre-train the point-patch transformer on object views', [
            py, 'tools/train.py', OBJECT_PRETRAIN_CFG, '--work-dir', str(work),
            '--cfg-options', *pre_opts, *transforms], logs / 'object_pretrain.log'),
        stage_cls('Export the object backbone', [
            py, 'tools/export_backbone.py', str(ckpt), str(export), '--trust-checkpoint'],
            logs / 'object_export.log'),
        stage_cls('Transfer table: probe and few-label fine-tuning vs scratch, over seeds', [
            py, 'tools/transfer.py', '--out-dir', str(out / 'transfer'), '--export',
            str(export), '--objects-root', str(heldout_root), *teacher['transfer'],
            '--seeds', *map(str, sz['transfer_seeds']),
            '--fractions', *map(str, sz['transfer_fractions']),
            '--num-points', str(sz['transfer_points']),
            '--finetune-steps', str(sz['finetune_steps'])], logs / 'transfer.log'),
    ]
    info = dict(sz, objects_pretrain_root=str(pre_root), objects_heldout_root=str(heldout_root),
                object_cache=str(cache), object_pretrain_config=OBJECT_PRETRAIN_CFG,
                object_export=str(export), object_teacher=teacher['name'],
                transfer_json=str(out / 'transfer' / 'transfer.json'),
                transfer_md=str(out / 'transfer' / 'transfer.md'))
    return stages, info
