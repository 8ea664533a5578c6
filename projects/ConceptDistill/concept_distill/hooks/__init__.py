"""Hooks, one concern each: the frozen teacher, backbone export, the pre-trained check."""
from concept_distill.hooks.backbone_export_hook import BackboneExportHook
from concept_distill.hooks.concept_distill_hook import ConceptDistillHook
from concept_distill.hooks.frozen_teacher_hook import FrozenTeacherHook
from concept_distill.hooks.pretrained_backbone_check_hook import PretrainedBackboneCheckHook
from concept_distill.hooks.skipped_frames_hook import SkippedFramesHook

__all__ = ['BackboneExportHook', 'ConceptDistillHook', 'FrozenTeacherHook',
           'PretrainedBackboneCheckHook', 'SkippedFramesHook']
