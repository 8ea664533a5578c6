"""Metrics: student-teacher alignment and concept retrieval (registered in METRICS)."""
from concept_distill.evaluation import classification_metric, part_seg_metric  # noqa: F401
from concept_distill.evaluation.alignment_metrics import alignment_metrics
from concept_distill.evaluation.concept_retrieval_metric import ConceptRetrievalMetric

__all__ = ['ConceptRetrievalMetric', 'alignment_metrics']
