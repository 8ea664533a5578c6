"""Exported backbones: load into mmdet3d's unmodified VoteNet; mismatches are clear errors."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from distill_builders import (
    REPO,
    VOTENET_CFG,
    build_distiller,
    optim_wrapper_for,
    paired_batch,
    votenet_backbone,
)
from mmdet3d.registry import MODELS
from mmengine.config import Config
from mmengine.logging import MMLogger

from concept_distill.checkpoint import (
    BackboneCheckpointError,
    check_backbone_checkpoint,
    compare_backbone_keys,
    save_backbone_checkpoint,
)
from concept_distill.checkpoint.backbone_checkpoint import backbone_meta
from concept_distill.checkpoint.checkpoint_io import UntrustedCheckpointError
from concept_distill.checkpoint.export import export_backbone
from concept_distill.engine.cli import load_config
from concept_distill.hooks import PretrainedBackboneCheckHook

MMDET3D_VOTENET = 'mmdet3d::votenet/votenet_8xb8_scannet-3d.py'


@pytest.fixture(scope='module')
def trained_backbone() -> dict:
    """Backbone state after two distillation steps (weights and BN statistics moved)."""
    torch.manual_seed(0)
    model = build_distiller()
    optim = optim_wrapper_for(model)
    model.train()
    for seed in range(2):
        model.train_step(paired_batch(seed=seed), optim)
    return dict(state=copy.deepcopy(model.backbone.state_dict()),
                teacher_key=model.teacher.cache_key(),
                full_state=copy.deepcopy(model.state_dict()))


def votenet_with(checkpoint: str) -> torch.nn.Module:
    """mmdet3d's VoteNet ScanNet model config, unmodified but for the backbone init_cfg."""
    cfg = Config.fromfile(VOTENET_CFG)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                                       prefix='backbone.')
    return MODELS.build(cfg.model)


def test_export_loads_into_unmodified_votenet(tmp_path, trained_backbone) -> None:
    path = str(tmp_path / 'backbone.pth')
    meta = backbone_meta(votenet_backbone(None), trained_backbone['teacher_key'],
                         source_config='configs/pretrain/x.py', iteration=2)
    save_backbone_checkpoint(trained_backbone['state'], meta, path)
    # Only tensors and plain metadata: torch's safe loader (what `Pretrained` uses) reads it.
    loaded = torch.load(path, weights_only=True)
    assert all(k.startswith('backbone.') for k in loaded['state_dict'])
    assert loaded['meta']['teacher']['weights_digest'] == 'random-init-seed0'
    assert loaded['meta']['iteration'] == 2 and loaded['meta']['backbone_type'] == 'PointNet2SASSG'

    votenet = votenet_with(path)
    report = check_backbone_checkpoint(path, votenet.backbone)
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []
    before = copy.deepcopy(votenet.backbone.state_dict())
    votenet.init_weights()
    after = votenet.backbone.state_dict()
    for key, value in trained_backbone['state'].items():
        assert torch.equal(after[key], value), key  # loaded, not a silent random init
    assert any(not torch.equal(before[k], after[k]) for k in after if after[k].is_floating_point())


def test_different_backbone_is_a_clear_error(tmp_path, trained_backbone) -> None:
    path = str(tmp_path / 'backbone.pth')
    save_backbone_checkpoint(trained_backbone['state'], backbone_meta(votenet_backbone(None)),
                             path)
    other = MODELS.build(dict(type='PointNet2SAMSG', in_channels=4, num_points=(64, 32),
                              radii=((0.2, 0.4), (0.4, 0.8)), num_samples=((8, 8), (8, 8)),
                              sa_channels=(((16, 16), (16, 16)), ((32, 32), (32, 32))),
                              aggregation_channels=(32, 64), fps_mods=('D-FPS', 'D-FPS'),
                              fps_sample_range_lists=((-1,), (-1,)), dilated_group=(False, False),
                              out_indices=(1,)))
    with pytest.raises(BackboneCheckpointError) as err:
        check_backbone_checkpoint(path, other)
    msg = str(err.value)
    assert 'PointNet2SAMSG' in msg and 'PointNet2SASSG' in msg
    assert 'missing keys' in msg and 'unexpected keys' in msg
    assert 'FP_modules.0.mlps.layer0.conv.weight' in msg  # keys are named
    assert '(64,) vs target (16,)' in msg

    # Same type, different input channels (xyz + rgb + height): shape mismatch named.
    wide = MODELS.build(dict(votenet_backbone(), in_channels=7))
    with pytest.raises(BackboneCheckpointError, match=r'shape mismatches .*layer0\.conv\.weight'):
        check_backbone_checkpoint(path, wide)


def test_file_without_backbone_keys_is_a_clear_error(tmp_path, trained_backbone) -> None:
    path = str(tmp_path / 'not_a_backbone.pth')
    torch.save({'state_dict': {'encoder.weight': torch.zeros(2)}}, path)
    target = MODELS.build(votenet_backbone())
    with pytest.raises(BackboneCheckpointError, match="no keys starting with 'backbone.'"):
        check_backbone_checkpoint(path, target)
    report = compare_backbone_keys({}, target)
    assert len(report.missing) == len(target.state_dict())


def test_atomic_write_never_silently_replaces_a_different_file(tmp_path,
                                                               trained_backbone) -> None:
    path = str(tmp_path / 'b.pth')
    state = trained_backbone['state']
    save_backbone_checkpoint(state, {'iteration': 1}, path)
    mtime = os.stat(path).st_mtime_ns
    save_backbone_checkpoint(state, {'iteration': 1}, path)  # same content: left alone
    assert os.stat(path).st_mtime_ns == mtime
    changed = {k: (v + 1 if v.is_floating_point() else v) for k, v in state.items()}
    with pytest.raises(FileExistsError, match='different checkpoint'):
        save_backbone_checkpoint(changed, {'iteration': 1}, path)
    save_backbone_checkpoint(changed, {'iteration': 1}, path, overwrite=True)
    key = next(k for k in changed if changed[k].is_floating_point())
    assert torch.equal(torch.load(path, weights_only=True)['state_dict']['backbone.' + key],
                       changed[key])
    assert sorted(os.listdir(tmp_path)) == ['b.pth']  # no temporary files left behind


def distiller_checkpoint(path, state: dict, **extra) -> str:
    """A distiller checkpoint as mmengine writes it (meta with the config text)."""
    cfg_text = Config.fromfile(os.path.join(REPO, 'configs', '_base_', 'models',
                                            'pointnet2-sassg_concept-distill.py')).pretty_text
    torch.save({'state_dict': state, 'meta': {'cfg': cfg_text, **extra.pop('meta', {})},
                **extra}, path)
    return str(path)


def test_mmengine_resolves_package_configs() -> None:
    cfg = load_config(MMDET3D_VOTENET)
    assert cfg.filename.endswith(os.path.join('.mim', 'configs', 'votenet',
                                              'votenet_8xb8_scannet-3d.py'))
    assert cfg.model.backbone.type == 'PointNet2SASSG'
    with pytest.raises(ModuleNotFoundError, match='not installed'):
        load_config('mmpose::x/y.py')  # never pip-installed behind the user's back


def test_export_backbone(tmp_path, trained_backbone) -> None:
    ckpt = distiller_checkpoint(tmp_path / 'iter_2.pth', trained_backbone['full_state'],
                                meta={'iter': 2, 'epoch': 0,
                                      'teacher': trained_backbone['teacher_key']})
    out = tmp_path / 'backbone.pth'
    result = export_backbone(ckpt, out, target_config=MMDET3D_VOTENET)
    assert result == (str(out), len(trained_backbone['state']), MMDET3D_VOTENET)
    exported = torch.load(out, weights_only=True)
    assert set(exported['state_dict']) == {'backbone.' + k for k in trained_backbone['state']}
    assert exported['meta']['iteration'] == 2
    assert exported['meta']['teacher']['model_name'] == 'ViT-B-16'
    assert exported['meta']['checked_against'] == MMDET3D_VOTENET
    assert check_backbone_checkpoint(str(out), votenet_with(str(out)).backbone).ok
    # Without a target, the checkpoint's own config is the target.
    assert export_backbone(ckpt, tmp_path / 'own.pth').checked_against


def test_export_backbone_refusals(tmp_path, trained_backbone) -> None:
    out = tmp_path / 'backbone.pth'
    export_backbone(distiller_checkpoint(tmp_path / 'a.pth', trained_backbone['full_state']),
                    out)
    # Refuses to replace a different file; a mismatching target is named.
    other = {k: (v * 0 if v.is_floating_point() else v)
             for k, v in trained_backbone['full_state'].items()}
    ckpt = distiller_checkpoint(tmp_path / 'b.pth', other)
    with pytest.raises(FileExistsError, match='refusing to overwrite'):
        export_backbone(ckpt, out)
    export_backbone(ckpt, out, overwrite=True)
    wide = tmp_path / 'wide.py'
    wide.write_text(f"_base_ = ['{VOTENET_CFG}']\nmodel = dict(backbone=dict(in_channels=7))\n")
    with pytest.raises(BackboneCheckpointError, match='shape mismatches'):
        export_backbone(ckpt, tmp_path / 'x.pth', target_config=str(wide))
    # No config anywhere: nothing to check against, so nothing is written.
    bare = tmp_path / 'bare.pth'
    torch.save({'state_dict': trained_backbone['full_state']}, bare)
    with pytest.raises(BackboneCheckpointError, match='stores no config'):
        export_backbone(bare, tmp_path / 'z.pth')
    # A pickled training checkpoint is refused unless trusted.
    pickled = distiller_checkpoint(tmp_path / 'c.pth', trained_backbone['full_state'],
                                   message_hub=SimpleNamespace(x=1))
    with pytest.raises(UntrustedCheckpointError, match='--trust-checkpoint'):
        export_backbone(pickled, tmp_path / 'y.pth')
    export_backbone(pickled, tmp_path / 'y.pth', trusted=True)
    assert not (tmp_path / 'x.pth').exists() and not (tmp_path / 'z.pth').exists()


def test_export_backbone_cli(tmp_path, trained_backbone) -> None:
    # One run of the script: its arguments reach export_backbone (refusals are tested above).
    ckpt = distiller_checkpoint(tmp_path / 'iter_2.pth', trained_backbone['full_state'],
                                message_hub=SimpleNamespace(x=1))
    out = tmp_path / 'backbone.pth'
    run = subprocess.run([sys.executable, 'tools/export_backbone.py', ckpt, str(out),
                          '--target-config', MMDET3D_VOTENET, '--trust-checkpoint'],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f'wrote {out} ({len(trained_backbone["state"])} tensors' in run.stdout
    assert check_backbone_checkpoint(str(out), votenet_with(str(out)).backbone).ok


def test_downstream_guard_hook(tmp_path, trained_backbone) -> None:
    good = str(tmp_path / 'good.pth')
    save_backbone_checkpoint(trained_backbone['state'], {}, good)
    logger = MMLogger.get_instance('test_method_guard')

    def runner(model: torch.nn.Module) -> SimpleNamespace:
        return SimpleNamespace(model=model, logger=logger, _load_from=None, _resume=False)

    hook = PretrainedBackboneCheckHook()
    votenet = votenet_with(good)
    r = runner(votenet)
    hook.before_run(r)
    with pytest.raises(RuntimeError, match='were not loaded'):
        hook.before_train(r)  # init_weights not run yet: the backbone is still random
    votenet.init_weights()
    hook.before_train(r)

    bad = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': {'backbone.other.weight': torch.zeros(1)}}, bad)
    with pytest.raises(BackboneCheckpointError, match='unexpected keys'):
        hook.before_run(runner(votenet_with(bad)))
