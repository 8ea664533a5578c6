"""ConceptDistillHook on a stub runner: frozen-teacher checks, cache check, backbone export."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from distill_builders import build_distiller, optim_wrapper_for
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger

from concept_distill.hooks import ConceptDistillHook


@pytest.fixture(scope='module')
def model():
    """A small distiller (its backbone is VoteNet's PointNet2SASSG)."""
    return build_distiller()


def stub_runner(model, tmp_path, optim=None, dataset=None) -> SimpleNamespace:
    """The runner attributes the hook reads."""
    source = tmp_path / 'source_cfg.py'
    source.write_text('x = 1\n')
    cfg = Config(dict(model=dict(backbone=dict(type='PointNet2SASSG', in_channels=4))),
                 filename=str(source))
    loop = SimpleNamespace(dataloader=SimpleNamespace(dataset=dataset))
    return SimpleNamespace(model=model, optim_wrapper=optim, cfg=cfg, iter=9, epoch=0,
                           logger=MMLogger.get_instance('test_method_hook'),
                           message_hub=MessageHub.get_instance(f'hook-{tmp_path.name}'),
                           experiment_name='exp', _train_loop=loop, _val_loop=None,
                           _test_loop=None)


def test_before_train_checks_the_frozen_teacher(model, tmp_path) -> None:
    optim = optim_wrapper_for(model)
    hook = ConceptDistillHook(log_alignment=False)
    runner = stub_runner(model, tmp_path, optim)
    runner.message_hub.update_info('last_ckpt', str(tmp_path / 'iter_5.pth'))  # as on resume
    hook.before_train(runner)
    assert model.log_alignment is False  # the hook switches the batch metrics
    hook.after_train_iter(runner, 5)
    # The checkpoint a run resumed from is not re-exported with weights that have moved on.
    assert not list(tmp_path.glob('backbone_*'))
    # A teacher parameter smuggled into the optimizer is caught.
    optim.optimizer.add_param_group({'params': [next(model.teacher.parameters())]})
    with pytest.raises(RuntimeError, match='in the optimizer'):
        hook.before_train(stub_runner(model, tmp_path, optim))
    model.log_alignment = True


def test_cache_of_another_teacher_is_an_error(model, tmp_path) -> None:
    checked = []

    class FakeCache:
        index = {'tokens': {'name': 'prefix', 'shape': [4, 32]}}  # the cache's index.json
        cache_dir = 'cache/'

        def check_key(self, expected: dict) -> None:
            checked.append(expected)

    transform = SimpleNamespace(cache=FakeCache(), tokens=True)
    dataset = SimpleNamespace(pipeline=SimpleNamespace(transforms=[transform]))
    runner = stub_runner(model, tmp_path, optim_wrapper_for(model), dataset)
    # The cache holds prefix tokens but the model reads cached tokens as patch tokens.
    with pytest.raises(ValueError, match="model.cached_tokens='prefix_tokens'"):
        ConceptDistillHook().before_train(runner)
    assert checked == [dict(teacher=model.teacher.cache_key())]


def test_teacher_back_to_eval_and_export_at_each_checkpoint(model, tmp_path) -> None:
    hook = ConceptDistillHook()
    runner = stub_runner(model, tmp_path)
    model.train()
    model.teacher.training = True  # something bypassed ConceptDistiller.train()
    hook.after_train_iter(runner, 0)
    assert not model.teacher.training
    assert not list(tmp_path.glob('backbone_*'))  # no checkpoint yet: nothing exported

    ckpt = str(tmp_path / 'iter_10.pth')
    checkpoint = {'meta': {'iter': 10, 'epoch': 0}}
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['meta']['teacher'] == model.teacher.cache_key()
    runner.message_hub.update_info('last_ckpt', ckpt)
    hook.after_train_iter(runner, 9)
    out = torch.load(tmp_path / 'backbone_iter_10.pth', weights_only=True)
    assert (tmp_path / 'backbone_latest.pth').is_file()
    assert out['meta']['iteration'] == 10
    assert out['meta']['source_config'] == str(tmp_path / 'source_cfg.py')
    assert out['meta']['backbone_type'] == 'PointNet2SASSG'
    state = model.backbone.state_dict()
    assert set(out['state_dict']) == {f'backbone.{k}' for k in state}
    assert all(torch.equal(out['state_dict'][f'backbone.{k}'], v) for k, v in state.items())
    # The same checkpoint is not exported twice.
    (tmp_path / 'backbone_iter_10.pth').unlink()
    hook.after_train_iter(runner, 10)
    assert not (tmp_path / 'backbone_iter_10.pth').exists()


def test_best_checkpoint_is_mirrored(model, tmp_path) -> None:
    hook = ConceptDistillHook()
    runner = stub_runner(model, tmp_path)
    hook.after_val_epoch(runner, {})
    assert not list(tmp_path.glob('backbone_*'))
    runner.message_hub.update_info('best_ckpt', str(tmp_path / 'best_align_top1_iter_9.pth'))
    hook.after_val_epoch(runner, {})
    assert (tmp_path / 'backbone_best_align_top1_iter_9.pth').is_file()
    assert not (tmp_path / 'backbone_latest.pth').exists()  # latest follows iter/epoch files
