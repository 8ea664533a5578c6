"""Every config of the project names the project's runner itself (not a tool default)."""
from __future__ import annotations

import pytest
from conftest import REPO_ROOT
from mmengine.config import Config

CONFIGS = sorted(p for p in (REPO_ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_config_sets_runner_and_imports(path) -> None:
    cfg = Config.fromfile(str(path), import_custom_modules=False)
    assert cfg.get('runner_type') == 'ConceptDistillRunner'
    assert 'concept_distill' in cfg.custom_imports['imports']
