"""ConceptDistill: importing this package registers every component of the project."""
from . import engine, ops  # noqa: F401  (ops first: CPU point-op dispatch for mmcv)
from . import datasets, hooks, models  # noqa: F401

__version__ = '0.1.0'
