"""Shared pytest fixtures: paths to the real fixtures, GPU marking, registration."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_ROOT = REPO_ROOT.parent / 'shared' / 'fixtures' / 'real'


def pytest_configure(config: pytest.Config) -> None:
    """The suite runs with the allocator policy the tools use (see engine/cpu_allocator.py)."""
    from concept_distill.engine import retain_freed_memory

    retain_freed_memory()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip only tests marked ``gpu`` when CUDA is absent; CPU paths never skip."""
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason='needs a CUDA device (run on the GPU machine)')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(no_gpu)


@pytest.fixture(scope='session', autouse=True)
def _register_everything() -> None:
    """Import the plugin (registers components, installs CPU op dispatch) once."""
    from mmdet3d.utils import register_all_modules

    import concept_distill  # noqa: F401

    register_all_modules(init_default_scope=True)


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """The checkout's root."""
    return REPO_ROOT


@pytest.fixture(scope='session')
def fixtures_root() -> Path:
    """``../shared/fixtures/real``: small real ScanNet / SUN RGB-D / S3DIS samples."""
    if not FIXTURES_ROOT.is_dir():
        raise FileNotFoundError(
            f'real fixtures not found at {FIXTURES_ROOT}: the tests expect ../shared beside '
            'the checkout')
    return FIXTURES_ROOT


@pytest.fixture(scope='session')
def import_tool() -> Callable[[str], ModuleType]:
    """Import a script of tools/ by name (tools/ is a folder of scripts, not a package)."""
    def load(name: str) -> ModuleType:
        sys.path.insert(0, str(REPO_ROOT / 'tools'))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.pop(0)

    return load


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run on one intra-op thread: spconv's CPU path issues thousands of small GEMMs, and with
    several OpenMP threads on a busy machine each one waits for the others (measured here: the
    over-fit run took 15 min with 2 threads vs 3.5 min with 1 on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """The one factory of synthetic ScanNet-format roots: ``synthetic_root(**kwargs)``.

    Arguments are those of ``create_synthetic_scannet``; a root is generated once per distinct
    set of arguments in the session and shared (read-only). A test that changes files passes
    ``copy_to=<its tmp_path / name>`` and gets its own copy.
    """
    import shutil

    from concept_distill.datasets.converters import create_synthetic_scannet

    made: dict[tuple, Path] = {}

    def make(copy_to: Path | None = None, **kwargs) -> Path:
        key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        if key not in made:
            root = tmp_path_factory.mktemp('synthetic')
            create_synthetic_scannet(root, **kwargs)
            made[key] = root
        if copy_to is None:
            return made[key]
        shutil.copytree(made[key], copy_to)
        return Path(copy_to)

    return make


@pytest.fixture(scope='session')
def synthetic_objects_root(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory of synthetic object roots: ``synthetic_objects_root(**kwargs)``.

    Arguments are those of ``create_synthetic_objects``; a root is generated once per distinct
    set of arguments in the session and shared (read-only).
    """
    from concept_distill.datasets.converters.synthetic.synthetic_objects import (
        create_synthetic_objects,
    )

    made: dict[tuple, Path] = {}

    def make(**kwargs) -> Path:
        key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        if key not in made:
            root = tmp_path_factory.mktemp('synthetic_objects')
            create_synthetic_objects(root, **kwargs)
            made[key] = root
        return made[key]

    return make
