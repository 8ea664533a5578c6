"""Runner, checkpoint-loading policy and the CPU allocator policy."""
from .checkpoint_io import UntrustedCheckpointError, atomic_torch_save, load_checkpoint_file
from .cpu_allocator import retain_freed_memory
from .runner import ConceptDistillRunner

__all__ = ['ConceptDistillRunner', 'UntrustedCheckpointError', 'atomic_torch_save',
           'load_checkpoint_file', 'retain_freed_memory']
