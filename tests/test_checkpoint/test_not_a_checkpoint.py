"""A file that is not a checkpoint at all is told apart from a pickled training checkpoint.

Every entry point (``load_from`` through the runner, ``init_cfg.checkpoint`` through the
downstream guard hook, tools/export_backbone.py) names the file and says it is not a
PyTorch checkpoint; no message steers the user to ``weights_only=False``, and trusting the
file changes nothing for a corrupt one.
"""
from __future__ import annotations

import random
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger

from concept_distill.checkpoint import (
    NotACheckpointError,
    UntrustedCheckpointError,
    load_checkpoint_file,
)
from concept_distill.checkpoint.export import export_backbone
from concept_distill.engine.runner import ConceptDistillRunner
from concept_distill.hooks import PretrainedBackboneCheckHook

REPO = Path(__file__).resolve().parents[2]
UNSAFE_ADVICE = 'weights_only=False'


def _state() -> dict:
    return {'state_dict': {'backbone.weight': torch.arange(4096, dtype=torch.float32)}}


def _random_bytes(path: Path) -> Path:
    # seeded, and never starting like a zip or a pickle, so the format check is what fails
    path.write_bytes(b"junk" + random.Random(0).randbytes(4092))
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b'')
    return path


def _truncated_zip(path: Path) -> Path:
    torch.save(_state(), path)  # torch's own writer makes the real format
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # a copy cut short: no central directory
    return path


def _truncated_legacy(path: Path) -> Path:
    torch.save(_state(), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])
    return path


def _other_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, 'w') as archive:  # e.g. a dataset archive named .pth by mistake
        archive.writestr('README.txt', 'not a checkpoint')
    return path


BAD_FILES = {'random_bytes': _random_bytes, 'empty': _empty, 'truncated_zip': _truncated_zip,
             'truncated_legacy': _truncated_legacy, 'other_zip': _other_zip}


def _assert_clear(message: str, path: Path) -> None:
    assert str(path) in message, message
    assert 'is not a PyTorch checkpoint' in message, message
    assert 'truncated or the wrong file' in message, message
    assert UNSAFE_ADVICE not in message and '--trust-checkpoint' not in message, message


@pytest.mark.parametrize('kind', sorted(BAD_FILES))
@pytest.mark.parametrize('trusted', [False, True])
def test_corrupt_file_is_not_a_checkpoint(tmp_path: Path, kind: str, trusted: bool) -> None:
    path = BAD_FILES[kind](tmp_path / f'{kind}.pth')
    with pytest.raises(NotACheckpointError) as err:
        load_checkpoint_file(str(path), trusted=trusted)
    _assert_clear(str(err.value), path)
    assert not isinstance(err.value, UntrustedCheckpointError)


def test_pickled_checkpoint_is_still_untrusted_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / 'iter_2.pth'
    torch.save(dict(_state(), message_hub=SimpleNamespace(x=1)), path)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_checkpoint_file(str(path))
    message = str(err.value)
    assert str(path) in message and '--trust-checkpoint' in message
    assert 'types.SimpleNamespace' in message  # the object the safe loader refused is named
    assert UNSAFE_ADVICE not in message and 'is not a PyTorch checkpoint' not in message
    assert load_checkpoint_file(str(path), trusted=True)['message_hub'].x == 1
    # sound files of both torch formats still load
    legacy = tmp_path / 'legacy.pth'
    torch.save(_state(), legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint_file(str(legacy))['state_dict']['backbone.weight'],
                       _state()['state_dict']['backbone.weight'])


@pytest.mark.parametrize('trusted', [False, True])
def test_load_from_names_the_corrupt_file(tmp_path: Path, trusted: bool) -> None:
    """``load_from`` / tools/test.py go through ConceptDistillRunner.load_checkpoint."""
    path = _random_bytes(tmp_path / 'load_from.pth')
    runner = SimpleNamespace(_resuming=False, cfg={'trust_checkpoint': trusted})
    with pytest.raises(NotACheckpointError) as err:
        ConceptDistillRunner.load_checkpoint(runner, str(path))
    _assert_clear(str(err.value), path)


def test_init_cfg_checkpoint_names_the_corrupt_file(tmp_path: Path) -> None:
    """A downstream config's ``init_cfg.checkpoint`` is read first by the guard hook."""
    path = _truncated_zip(tmp_path / 'backbone.pth')
    backbone = torch.nn.Linear(2, 2)
    backbone.init_cfg = dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')
    model = torch.nn.Module()
    model.backbone = backbone
    runner = SimpleNamespace(model=model, logger=MMLogger.get_instance('test_not_a_ckpt'))
    with pytest.raises(NotACheckpointError) as err:
        PretrainedBackboneCheckHook().before_run(runner)
    _assert_clear(str(err.value), path)


@pytest.mark.slow  # one start of the script (imports mmdet3d): about 50 s on a busy machine
def test_export_backbone_names_the_corrupt_file(tmp_path: Path) -> None:
    path = _random_bytes(tmp_path / 'iter_2.pth')
    out = tmp_path / 'backbone.pth'
    with pytest.raises(NotACheckpointError) as err:
        export_backbone(path, out)
    _assert_clear(str(err.value), path)
    # As a user runs it, trusting the file: the same clear error, exit 1, no traceback.
    run = subprocess.run([sys.executable, 'tools/export_backbone.py', str(path), str(out),
                          '--trust-checkpoint'], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    assert f'export_backbone: {path} is not a PyTorch checkpoint' in run.stderr
    _assert_clear(run.stderr, path)
    assert not out.exists()
