"""ConceptDistill: importing this package registers every component of the project."""
# ops first: the CPU point-op dispatch must be installed before any model is built.
from . import engine, ops  # noqa: I001,F401
from . import datasets, hooks, models  # noqa: F401

__version__ = '0.1.0'
