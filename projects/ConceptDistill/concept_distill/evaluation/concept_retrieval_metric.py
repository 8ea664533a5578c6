"""Validation metric of the distiller: held-out alignment (mean cosine, retrieval top-1)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from concept_distill.evaluation.alignment_metrics import alignment_metrics


@METRICS.register_module()
class ConceptRetrievalMetric(BaseMetric):
    """Student embedding -> teacher embedding retrieval among `num_candidates` held-out pairs.

    Reads `student_embedding` and `teacher_embedding` from the distiller's `predict` outputs.
    Galleries: the held-out pairs in a fixed random order (`gallery_seed`), cut into groups of
    `num_candidates`; every pair is a query once. `gallery_seed=None` keeps the dataset order
    instead (with scene-sorted frames: galleries of frames of one scene, a harder test).
    Reports `align/cos`, `align/top1`, `align/chance`, `align/top1_over_chance`, and
    `align/top1_ordered` (galleries in dataset order) when galleries are shuffled.
    """

    default_prefix = 'align'

    def __init__(self, num_candidates: int = 32, gallery_seed: int | None = 0,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_candidates = num_candidates
        self.gallery_seed = gallery_seed

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep each sample's two embeddings (on CPU)."""
        for sample in data_samples:
            if 'student_embedding' not in sample or 'teacher_embedding' not in sample:
                raise KeyError('ConceptRetrievalMetric needs the ConceptDistiller predict '
                               'outputs (student_embedding, teacher_embedding)')
            self.results.append((sample['student_embedding'].detach().float().cpu(),
                                 sample['teacher_embedding'].detach().float().cpu()))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Retrieval over consecutive galleries of `num_candidates` pairs."""
        student = torch.stack([r[0] for r in results])
        teacher = torch.stack([r[1] for r in results])
        extra = {}
        if self.gallery_seed is not None:
            extra['top1_ordered'] = alignment_metrics(student, teacher,
                                                      self.num_candidates)['top1']
            gen = torch.Generator().manual_seed(self.gallery_seed)
            order = torch.randperm(len(results), generator=gen)
            student, teacher = student[order], teacher[order]
        m = alignment_metrics(student, teacher, self.num_candidates)
        if m['num_candidates'] < self.num_candidates:
            MMLogger.get_current_instance().warning(
                f'ConceptRetrievalMetric: only {len(results)} held-out pairs, retrieval uses '
                f'galleries of {m["num_candidates"]} instead of {self.num_candidates}')
        return dict(cos=m['cos'], top1=m['top1'], chance=m['chance'],
                    top1_over_chance=m['top1'] / m['chance'],
                    num_candidates=float(m['num_candidates']), **extra)
