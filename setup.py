"""Install the ConceptDistill mmdet3d plugin (`concept_distill`)."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
PKG_ROOT = 'projects/ConceptDistill'
# Build and dev tools are pinned in the same file but are not runtime requirements.
_DEV_ONLY = {'setuptools', 'wheel', 'ninja', 'pytest', 'ruff'}


def read_pins() -> list[str]:
    """Runtime requirements, pinned by requirements/constraints.txt (the one pin list)."""
    pins = []
    for line in (ROOT / 'requirements' / 'constraints.txt').read_text().splitlines():
        line = line.split('#')[0].strip()
        if line and line.split('==')[0] not in _DEV_ONLY:
            pins.append(line)
    return pins


setup(
    name='concept_distill',
    version='0.1.0',
    description='Concept-alignment distillation from CLIP into 3D point-cloud backbones '
    '(mmdetection3d plugin)',
    python_requires='>=3.10',
    package_dir={'': PKG_ROOT},
    packages=find_packages(PKG_ROOT),
    install_requires=read_pins(),
)
