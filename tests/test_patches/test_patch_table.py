"""The patch table: every patch installed on import, reported by installed(), idempotent."""
from __future__ import annotations

import importlib
import subprocess
import sys

import concept_distill.patches as patches


def test_every_patch_is_listed_and_active() -> None:
    report = patches.installed()
    assert set(report) == set(patches.PATCHES)
    assert all(report.values()), report
    # every patch module exposes the same pair, so the table is the whole story
    for name in patches.PATCHES:
        module = importlib.import_module(f'concept_distill.patches.{name}')
        assert callable(module.install) and callable(module.installed)


def test_install_all_twice_wraps_nothing_twice() -> None:
    from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor

    before = Det3DDataPreprocessor.voxelize
    patches.install_all()
    assert Det3DDataPreprocessor.voxelize is before


def test_installed_report_from_a_fresh_process() -> None:
    """The command the docs give prints every patch as active."""
    code = 'import concept_distill.patches as p; print(sorted(p.installed().items()))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout
    for name in patches.PATCHES:
        assert f"('{name}', True)" in out
