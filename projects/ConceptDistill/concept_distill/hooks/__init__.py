"""Hooks: distillation pre-training, and the downstream pre-trained-backbone guard."""
from .concept_distill_hook import ConceptDistillHook
from .pretrained_backbone_check_hook import PretrainedBackboneCheckHook

__all__ = ['ConceptDistillHook', 'PretrainedBackboneCheckHook']
