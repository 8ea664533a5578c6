"""Runner and checkpoint-loading policy."""
from .checkpoint_io import UntrustedCheckpointError, atomic_torch_save, load_checkpoint_file
from .runner import ConceptDistillRunner

__all__ = ['ConceptDistillRunner', 'UntrustedCheckpointError', 'atomic_torch_save',
           'load_checkpoint_file']
