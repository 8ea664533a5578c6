"""Running: the project's runner, CPU-capable DDP and AMP, the allocator policy, the tools'
shared set-up."""
from concept_distill.engine.amp import CPUAmpOptimWrapper, enable_amp
from concept_distill.engine.cpu_allocator import retain_freed_memory
from concept_distill.engine.runner import ConceptDistillRunner

__all__ = ['CPUAmpOptimWrapper', 'ConceptDistillRunner', 'enable_amp', 'retain_freed_memory']
