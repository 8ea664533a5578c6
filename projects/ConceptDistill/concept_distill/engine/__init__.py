"""Running: the project's runner, the CPU allocator policy, the tools' shared set-up."""
from concept_distill.engine.cpu_allocator import retain_freed_memory
from concept_distill.engine.runner import ConceptDistillRunner

__all__ = ['ConceptDistillRunner', 'retain_freed_memory']
