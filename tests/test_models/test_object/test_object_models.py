"""Point classifier and part segmentor: modes, shapes, voting keys, category restriction,
the data preprocessor, a pre-trained backbone export, and a run under mmengine's Runner."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.dataset import pseudo_collate
from mmengine.structures import BaseDataElement

import concept_distill.models.classification
import concept_distill.models.part_segmentation  # noqa: F401
from concept_distill.models.part_segmentation import three_nn_interpolate

TINY = dict(type='PointPatchTransformer', num_groups=16, group_size=8, depth=3, embed_dims=32,
            num_heads=2, drop_path_rate=0.0, patch_hidden_channels=(16, 32),
            patch_fuse_channels=32)


def _clouds(b: int, n: int = 128, c: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, generator=g) for _ in range(b)]


def _classifier(**kw):
    cfg = dict(type='PointClassifier', backbone=dict(TINY, use_cls_token=True), num_classes=4)
    cfg.update(kw)
    return MODELS.build(cfg)


def _segmentor(**kw):
    cfg = dict(type='PointPartSegmentor', backbone=TINY, num_parts=7, num_categories=3,
               feature_blocks=(0, 1, -1), propagate_dims=16, head_channels=(16,))
    cfg.update(kw)
    return MODELS.build(cfg)


def test_classifier_modes():
    model = _classifier(test_cfg=dict(num_votes=3))
    samples = [BaseDataElement(gt_label=torch.tensor([i % 4])) for i in range(4)]
    data = model.data_preprocessor(dict(inputs=dict(points=_clouds(4)), data_samples=samples))
    assert data['inputs']['points'].shape == (4, 128, 3)
    assert model(**data, mode='tensor').shape == (4, 4)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'acc'} and losses['loss_cls'].requires_grad
    model.eval()
    out = model(**data, mode='predict')
    assert out[0].pred_score.shape == (4,) and out[0].pred_label.shape == (1,)
    assert out[0].pred_label_vote.shape == (1,)
    again = model(**model.data_preprocessor(dict(inputs=dict(points=_clouds(4)),
                                                 data_samples=samples)), mode='predict')
    torch.testing.assert_close(again[0].pred_score_vote, out[0].pred_score_vote)  # seeded
    plain = _classifier()
    plain.eval()
    fresh = [BaseDataElement(gt_label=torch.tensor([i % 4])) for i in range(4)]
    out = plain(inputs=data['inputs'], data_samples=fresh, mode='predict')
    assert 'pred_label_vote' not in out[0]
    with pytest.raises(ValueError, match="mode must be 'loss', 'predict' or 'tensor'"):
        model(**data, mode='nope')


def test_classifier_pooling_choices():
    with pytest.raises(ValueError, match="pool includes 'cls' but the backbone has no class"):
        MODELS.build(dict(type='PointClassifier', backbone=TINY, num_classes=2))
    model = MODELS.build(dict(type='PointClassifier', backbone=TINY, num_classes=2,
                              pool=('max', 'mean')))
    assert model.head[0].in_features == 2 * 32
    with pytest.raises(ValueError, match='pool must be a non-empty subset'):
        MODELS.build(dict(type='PointClassifier', backbone=TINY, num_classes=2, pool=('sum',)))


def test_three_nn_interpolation_by_hand():
    centers = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [5, 5, 5]]])
    feats = torch.tensor([[[1.0], [2.0], [4.0], [100.0]]])
    xyz = torch.tensor([[[0.0, 0, 0], [0.5, 0, 0]]])
    out = three_nn_interpolate(xyz, centers, feats)
    assert out[0, 0, 0].item() == pytest.approx(1.0, abs=1e-6)  # on a centre
    # (0.5, 0, 0): squared distances 0.25, 0.25, 4.25 -> weights 4, 4, 1/4.25
    w = np.array([4.0, 4.0, 1 / 4.25])
    assert out[0, 1, 0].item() == pytest.approx((w @ [1, 2, 4]) / w.sum(), rel=1e-5)


def test_segmentor_modes_and_category_restriction():
    model = _segmentor(test_cfg=dict(return_logits=True))
    samples = [BaseDataElement(metainfo=dict(category=c, part_ids=p),
                               gt_part=torch.randint(0, 7, (128,)))
               for c, p in ((0, [0, 1]), (2, [4, 5, 6]))]
    data = model.data_preprocessor(dict(inputs=dict(points=_clouds(2)), data_samples=samples))
    assert model(**data, mode='tensor').shape == (2, 128, 7)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_seg', 'acc'}
    losses['loss_seg'].backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    model.eval()
    out = model(**data, mode='predict')
    for s in out:
        assert set(s.pred_part.unique().tolist()) <= set(s.part_ids)
        restricted = torch.as_tensor(s.part_ids)[s.pred_part_logits[:, s.part_ids].argmax(1)]
        torch.testing.assert_close(s.pred_part, restricted)
    # The category is an input: changing it changes the logits.
    other = [BaseDataElement(metainfo=dict(category=1, part_ids=[2, 3])) for _ in range(2)]
    logits = model(**data, mode='tensor')
    assert not torch.allclose(model(inputs=data['inputs'], data_samples=other, mode='tensor'),
                              logits)
    with pytest.raises(ValueError, match=r'feature_blocks \[5\] out of range'):
        _segmentor(feature_blocks=(0, 5))
    bad = [BaseDataElement(metainfo=dict(category=3)) for _ in range(2)]
    with pytest.raises(ValueError, match=r'object categories \[3, 3\] outside'):
        model(inputs=data['inputs'], data_samples=bad, mode='tensor')


def test_preprocessor_needs_equal_clouds():
    model = _classifier()
    with pytest.raises(ValueError, match='sample a fixed number of points'):
        model.data_preprocessor(dict(inputs=dict(points=[torch.zeros(10, 3), torch.zeros(9, 3)]),
                                     data_samples=[]))


def test_pretrained_backbone_loads_into_both_models(tmp_path):
    from concept_distill.checkpoint.backbone_checkpoint import check_backbone_checkpoint

    source = MODELS.build(dict(TINY, in_channels=3))
    ckpt = tmp_path / 'backbone.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in source.state_dict().items()}),
               ckpt)
    init = dict(type='Pretrained', checkpoint=str(ckpt), prefix='backbone.')
    for model in (MODELS.build(dict(type='PointClassifier', backbone=dict(TINY, init_cfg=init),
                                    num_classes=3, pool=('max',))),
                  _segmentor(backbone=dict(TINY, init_cfg=init))):
        check_backbone_checkpoint(str(ckpt), model.backbone, 'backbone.')  # 0 missing/unexp.
        model.init_weights()
        for k, v in source.state_dict().items():
            torch.testing.assert_close(model.backbone.state_dict()[k], v)


def _tiny_cls_dataset(tmp_path):
    """Four objects in the modelnet40_normal_resampled layout (by hand)."""
    root = tmp_path / 'mn'
    root.mkdir()
    (root / 'modelnet40_shape_names.txt').write_text('a\nb\n')
    ids = ['a_0001', 'a_0002', 'b_0001', 'b_0002']
    (root / 'modelnet40_train.txt').write_text('\n'.join(ids))
    (root / 'modelnet40_test.txt').write_text('\n'.join(ids))
    for s in ids:
        (root / s[0]).mkdir(exist_ok=True)
        np.savetxt(root / s[0] / f'{s}.txt', np.random.default_rng(0).normal(size=(200, 6)),
                   delimiter=',', fmt='%.5f')
    return root


def test_runs_under_mmengine_runner(tmp_path):
    from mmengine.runner import Runner

    root = _tiny_cls_dataset(tmp_path)
    pipeline = [dict(type='ObjectPointSample', num_points=128, deterministic=True),
                dict(type='NormalizeObjectPoints'), dict(type='PackObjectInputs')]
    loader = dict(batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
                  dataset=dict(type='ModelNet40Dataset', data_root=str(root), split='train',
                               pipeline=pipeline))
    runner = Runner(
        model=dict(type='PointClassifier', backbone=dict(TINY, use_cls_token=True),
                   num_classes=2, test_cfg=dict(num_votes=2)),
        work_dir=str(tmp_path / 'work'), train_dataloader=loader,
        val_dataloader=dict(loader, sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=dict(type='ObjectClassificationMetric'),
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        default_scope='mmdet3d')
    runner.train()
    metrics = runner.val_loop.run()
    assert set(metrics) == {'overall_acc', 'mean_class_acc', 'overall_acc_vote',
                            'mean_class_acc_vote'}
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()


def test_batches_of_the_pipeline(tmp_path):
    root = _tiny_cls_dataset(tmp_path)
    from mmdet3d.registry import DATASETS

    ds = DATASETS.build(dict(type='ModelNet40Dataset', data_root=str(root), use_normals=True,
                             pipeline=[dict(type='ObjectPointSample', num_points=64),
                                       dict(type='PackObjectInputs')]))
    model = _classifier(backbone=dict(TINY, use_cls_token=True, in_channels=6))
    data = model.data_preprocessor(pseudo_collate([ds[0], ds[1]]), True)
    assert data['inputs']['points'].shape == (2, 64, 6)
    assert model(**data, mode='loss')['loss_cls'].isfinite()
