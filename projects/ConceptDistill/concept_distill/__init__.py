"""ConceptDistill: importing this package registers every component of the project."""
from concept_distill import patches

patches.install_all()  # what this changes in mmcv / mmdet3d / spconv: patches/__init__.py

from concept_distill import (  # noqa: E402,I001  (registration after the patches)
    checkpoint, datasets, engine, evaluation, hooks, models, visualization)

__all__ = ['checkpoint', 'datasets', 'engine', 'evaluation', 'hooks', 'models', 'patches',
           'visualization']
__version__ = '0.1.0'
