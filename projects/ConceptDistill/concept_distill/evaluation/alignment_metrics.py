"""Alignment metrics between student and teacher embeddings (mean cosine, retrieval top-1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def alignment_metrics(student: torch.Tensor, teacher: torch.Tensor,
                      num_candidates: int | None = None) -> dict[str, float]:
    """Mean cosine of matching pairs and student->teacher retrieval top-1.

    student, teacher: (N, D), row i of each is one pair. Retrieval ranks, for each student row,
    the teacher rows of its gallery: consecutive chunks of `num_candidates` pairs (None: all N
    at once; a trailing chunk smaller than `num_candidates` is dropped unless it is the only
    one, so chance stays 1 / num_candidates). Returns cos, top1, chance and the counts.
    """
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f'need two (N, D) tensors of one shape, got {tuple(student.shape)} '
                         f'and {tuple(teacher.shape)}')
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    n = s.shape[0]
    cos = (s * t).sum(-1).mean().item() if n else float('nan')
    size = n if num_candidates is None or num_candidates >= n else num_candidates
    hits, queries = 0, 0
    for start in range(0, n - size + 1, size) if size else []:
        sim = s[start:start + size] @ t[start:start + size].t()
        hits += (sim.argmax(dim=1) == torch.arange(size, device=sim.device)).sum().item()
        queries += size
    return dict(cos=cos, top1=hits / queries if queries else float('nan'),
                chance=1.0 / size if size else float('nan'), num_queries=queries,
                num_candidates=size)
