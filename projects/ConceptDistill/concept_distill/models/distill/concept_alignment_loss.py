"""Concept-alignment loss: transformed concept tokens vs the teacher's semantic targets."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmengine import dist
from torch import distributed as torch_dist
from torch import nn


def pool_concepts(concepts: torch.Tensor) -> torch.Tensor:
    """(B, K, D) concept tokens -> (B, D) student embedding (mean over concepts)."""
    return concepts.mean(dim=1)


CONCEPT_TARGETS = ('auto', 'prefix_tokens', 'patch_tokens')


@torch.no_grad()
def balanced_assignment(sim: torch.Tensor, epsilon: float = 0.05,
                        iters: int = 10) -> torch.Tensor:
    """Entropic optimal transport of P patches onto K concepts with equal shares (Sinkhorn).

    sim (B, K, P) cosine similarities -> weights (B, K, P) whose rows sum to 1 (concept k's
    distribution over patches; exact) and whose columns sum to about K / P (every patch
    assigned in full; Sinkhorn's approximation, closer with more `iters`).
    The equal shares keep concepts apart: a concept cannot take the patches of another.
    Each patch's similarities are standardised over the concepts first, so `epsilon` is in
    units of how much the concepts differ at that patch: concepts that are still nearly
    identical (as an extractor starts) split the patches sharply instead of sharing them
    uniformly, which would pull every concept to the same mean patch and keep them collapsed.
    """
    b, k, p = sim.shape
    if k == 1:  # one concept takes every patch
        return torch.ones_like(sim) / p
    sim = sim.float()
    z = (sim - sim.mean(dim=1, keepdim=True)) / sim.std(dim=1, keepdim=True).clamp(min=1e-6)
    log_q = z / epsilon
    # Log-domain Sinkhorn: alternate the two marginal constraints, the concepts' last so that
    # each concept's weights are an exact distribution.
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(p)
        log_q = log_q - torch.logsumexp(log_q, dim=2, keepdim=True) - math.log(k)
    return (log_q + math.log(k)).exp().to(sim.dtype)


def sample_patch_features(patch_tokens: torch.Tensor, grid_size: tuple[int, int],
                          xy: torch.Tensor) -> torch.Tensor:
    """Bilinear read of (B, P, D) patch tokens on their (rows, cols) grid at xy (B, N, 2) in
    [-1, 1] (`grid_sample` convention, align_corners=False) -> (B, N, D)."""
    b, p, d = patch_tokens.shape
    rows, cols = grid_size
    if rows * cols != p:
        raise ValueError(f'{p} patch tokens do not form the teacher grid {rows}x{cols}')
    fmap = patch_tokens.transpose(1, 2).reshape(b, d, rows, cols)
    out = F.grid_sample(fmap, xy.unsqueeze(1).to(fmap.dtype), mode='bilinear',
                        padding_mode='border', align_corners=False)
    return out.squeeze(2).transpose(1, 2)


class _AllGather(torch.autograd.Function):
    """All-gather along dim 0 whose backward gives each rank the gradient of the whole loss.

    Every rank computes its own loss from the gathered rows, so the gradient of a row is
    spread over the ranks; backward sums (all-reduces) the gathered gradient and hands each
    rank the slice of its own rows. With DDP's gradient averaging on top, every parameter
    gets the gradient of the mean of the ranks' losses, i.e. of the loss on the concatenated
    batch (equal per-rank batches; mmengine's DefaultSampler pads to equal).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        rank = torch_dist.get_rank()
        ctx.start, ctx.stop = sum(sizes[:rank]), sum(sizes[:rank + 1])
        # all_gather needs one shape on every rank: pad to the largest batch, then trim.
        longest = max(sizes)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[:x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        torch_dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone(memory_format=torch.contiguous_format)  # reduced in place
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        return grad[ctx.start:ctx.stop], None


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(B_r, ...) on every rank -> (sum B_r, ...) in rank order, and this rank's row offset.

    Differentiable: see `_AllGather`. One process: `x` itself and offset 0.
    """
    if not dist.is_distributed() or dist.get_world_size() == 1:
        return x, 0
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    torch_dist.all_gather(sizes, size)  # ranks may hold different batch sizes (a last batch)
    sizes = [int(s) for s in sizes]
    return _AllGather.apply(x, sizes), sum(sizes[:dist.get_rank()])


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """All-reduced sum of a detached statistic (the value itself in one process)."""
    if not dist.is_distributed():
        return value
    value = value.detach().clone()
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
    return value


@MODELS.register_module()
class ConceptAlignmentLoss(nn.Module):
    """Weighted sum of alignment terms, each returned as its own `loss_*` entry.

    - per-concept (`concept_weight`, on by default; `loss_concept`): each concept has its own
      target, so the K concepts cannot collapse into one pooled vector. `concept_target`:
      'prefix_tokens' (concept k vs prefix token k of the frozen ClipCap mapper, as the
      token-wise term), 'patch_tokens' (balanced matching: Sinkhorn assigns every CLIP patch
      token to the concepts in equal shares, `balanced_assignment`, and each concept is pulled
      to its share, mean weighted 1 - cos), or 'auto' (prefix tokens when the teacher has a
      mapper, else patch tokens; the distiller resolves it at build time). None turns it off.
    - token-wise (`token_weight`): concept k vs prefix token k of the frozen mapper, cosine
      (1 - cos) or smooth-L1; needs K concepts == K prefix tokens.
    - global (`global_weight`): mean-pooled concepts vs the global CLIP embedding, 1 - cos.
    - contrastive (`contrastive_weight`): InfoNCE between pooled concepts and the global
      embeddings of the batch (other samples are the negatives); temperature learnable
      (CLIP's log-parameterised logit scale, clamped at `max_logit_scale`) or fixed;
      with `gather_distributed`, the negatives are the whole batch of all processes.
    - set-to-set (`set_weight`): symmetric Chamfer of cosine distances between the K concepts
      and the P patch tokens (each concept near some patch, each patch near some concept).
    - dense (`dense_weight`, off by default; `loss_dense`): every point token, through the
      distiller's dense head, vs the CLIP patch feature at the pixel its point projects to
      (bilinear on the patch grid), mean 1 - cos over the tokens seen by the image.

    Target centring (`center_momentum`): CLIP image embeddings share a large common component
    (random or trained towers: pairwise cosines of 0.5-0.98 between unrelated images), which
    leaves InfoNCE little angle to work with. With centring on, the contrastive term compares
    `normalize(normalize(x) - c)` where `c` is an EMA of the normalised teacher embeddings
    (updated in training, over the batch of all processes). The global term keeps the raw direction.

    Only the student receives gradients: every target is detached.
    """

    def __init__(self,
                 token_weight: float = 0.0,
                 token_metric: str = 'cosine',
                 smooth_l1_beta: float = 0.1,
                 global_weight: float = 1.0,
                 contrastive_weight: float = 1.0,
                 temperature: float = 0.07,
                 learnable_temperature: bool = True,
                 max_logit_scale: float = 100.0,
                 symmetric: bool = True,
                 gather_distributed: bool = True,
                 set_weight: float = 0.0,
                 set_symmetric: bool = True,
                 concept_weight: float = 1.0,
                 concept_target: str | None = 'auto',
                 match_epsilon: float = 0.05,
                 match_iters: int = 10,
                 dense_weight: float = 0.0,
                 center_momentum: float | None = None,
                 embed_dim: int | None = None) -> None:
        super().__init__()
        if token_metric not in ('cosine', 'smooth_l1'):
            raise ValueError(f"token_metric must be 'cosine' or 'smooth_l1', got {token_metric!r}")
        if concept_target is not None and concept_target not in CONCEPT_TARGETS:
            raise ValueError(f'concept_target must be one of {CONCEPT_TARGETS} or None, got '
                             f'{concept_target!r}')
        if concept_target is None:
            concept_weight = 0.0
        weights = (token_weight, global_weight, contrastive_weight, set_weight, concept_weight,
                   dense_weight)
        if min(weights) < 0:
            raise ValueError('loss weights must be >= 0')
        if sum(weights) == 0:
            raise ValueError('ConceptAlignmentLoss: every term has weight 0')
        if match_epsilon <= 0 or match_iters < 1:
            raise ValueError('balanced matching needs match_epsilon > 0 and match_iters >= 1')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.token_weight = token_weight
        self.token_metric = token_metric
        self.smooth_l1_beta = smooth_l1_beta
        self.global_weight = global_weight
        self.contrastive_weight = contrastive_weight
        self.symmetric = symmetric
        self.gather_distributed = gather_distributed
        self.set_weight = set_weight
        self.set_symmetric = set_symmetric
        self.concept_weight = concept_weight
        self.concept_target = concept_target if concept_weight else None
        self.match_epsilon = match_epsilon
        self.match_iters = match_iters
        self.dense_weight = dense_weight
        self.max_log_scale = math.log(max_logit_scale)
        if center_momentum is not None:
            if not 0 <= center_momentum < 1:
                raise ValueError(f'center_momentum must be in [0, 1), got {center_momentum}')
            if embed_dim is None:
                raise ValueError('target centring needs embed_dim (the distiller fills it)')
            self.register_buffer('target_center', torch.zeros(embed_dim))
            self.register_buffer('center_ready', torch.tensor(False))
        self.center_momentum = center_momentum
        log_scale = torch.tensor(math.log(1.0 / temperature))
        # Without the contrastive term the temperature would be an unused parameter (which
        # DDP rejects), so it is only learnable when it is used.
        if learnable_temperature and contrastive_weight > 0:
            self.logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer('logit_scale', log_scale)

    def resolve_concept_target(self, has_prefix: bool) -> str | None:
        """Fix 'auto' to 'prefix_tokens' (the teacher has a mapper) or 'patch_tokens'."""
        if self.concept_target == 'auto':
            self.concept_target = 'prefix_tokens' if has_prefix else 'patch_tokens'
        return self.concept_target

    @property
    def needs(self) -> set[str]:
        """Teacher outputs the active terms read ('global', 'prefix_tokens', 'patch_tokens');
        an unresolved 'auto' concept target reads whichever of the two token sets is given."""
        out = set()
        if self.global_weight or self.contrastive_weight:
            out.add('global')
        if self.token_weight:
            out.add('prefix_tokens')
        if self.set_weight or self.dense_weight:
            out.add('patch_tokens')
        if self.concept_target in ('prefix_tokens', 'patch_tokens'):
            out.add(self.concept_target)
        return out

    def token_loss(self, concepts: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Concept k vs prefix token k: mean (1 - cos) or mean smooth-L1."""
        if concepts.shape != prefix.shape:
            raise ValueError(f'token-wise alignment needs concepts and prefix tokens of one '
                             f'shape, got {tuple(concepts.shape)} vs {tuple(prefix.shape)} '
                             f'(set num_concepts = the mapper num_prefix)')
        if self.token_metric == 'cosine':
            return (1 - F.cosine_similarity(concepts, prefix, dim=-1)).mean()
        return F.smooth_l1_loss(concepts, prefix, beta=self.smooth_l1_beta)

    def clamped_logit_scale(self) -> torch.Tensor:
        """log(1 / temperature) as the contrastive term uses it: clamped at `max_logit_scale`
        (CLIP's guard against a runaway scale), differentiable below the clamp."""
        return self.logit_scale.clamp(max=self.max_log_scale)

    def temperature(self) -> torch.Tensor:
        """The temperature the contrastive term applies (detached, for the log)."""
        return 1.0 / self.clamped_logit_scale().detach().exp()

    def global_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Mean (1 - cos) between pooled concepts and the global embedding."""
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """EMA of the normalised teacher embeddings (training only; mean over GPUs)."""
        if self.center_momentum is None or not self.training:
            return
        # Sum and count over all ranks: every rank keeps the same centre, the one a single
        # process would compute on the concatenated batch (also with unequal batches).
        unit = F.normalize(teacher.float(), dim=-1)
        stats = sum_over_ranks(torch.cat([unit.sum(dim=0), unit.new_tensor([unit.shape[0]])]))
        batch_mean = stats[:-1] / stats[-1].clamp(min=1)
        if not bool(self.center_ready):
            self.target_center.copy_(batch_mean)
            self.center_ready.fill_(True)
        else:
            self.target_center.mul_(self.center_momentum).add_(
                batch_mean, alpha=1 - self.center_momentum)

    def embed_pair(self, student: torch.Tensor,
                   teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit vectors the contrastive term compares (centred when centring is on)."""
        s = F.normalize(student, dim=-1)
        t = F.normalize(teacher.to(s.dtype), dim=-1)
        if self.center_momentum is not None and bool(self.center_ready):
            c = self.target_center.to(s.dtype)
            s, t = F.normalize(s - c, dim=-1), F.normalize(t - c, dim=-1)
        return s, t

    def contrastive_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """InfoNCE over the batch (and over all GPUs when gathering); 0 for a batch of one."""
        s, t = self.embed_pair(student, teacher)
        offset = 0
        if self.gather_distributed and dist.is_distributed():
            # Every rank's rows are negatives of every other rank's; their gradients flow
            # back to the rank that computed them (gather_with_grad).
            s_all, offset = gather_with_grad(s)
            t_all, _ = gather_with_grad(t)
        else:
            s_all, t_all = s, t
        scale = self.clamped_logit_scale().exp()
        labels = torch.arange(s.shape[0], device=s.device) + offset
        loss = F.cross_entropy(scale * s @ t_all.t(), labels)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(scale * t @ s_all.t(), labels))
        return loss

    def set_loss(self, concepts: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Chamfer of cosine distances between concept and patch-token sets."""
        sim = F.normalize(concepts, dim=-1) @ F.normalize(patches, dim=-1).transpose(1, 2)
        loss = (1 - sim.max(dim=2).values).mean()
        if self.set_symmetric:
            loss = 0.5 * (loss + (1 - sim.max(dim=1).values).mean())
        return loss

    def matched_patch_loss(self, concepts: torch.Tensor,
                           patches: torch.Tensor) -> torch.Tensor:
        """Balanced soft matching: mean over concepts of the assignment-weighted 1 - cos."""
        sim = F.normalize(concepts, dim=-1) @ F.normalize(patches.to(concepts.dtype),
                                                          dim=-1).transpose(1, 2)
        weights = balanced_assignment(sim.detach(), self.match_epsilon, self.match_iters)
        return ((1 - sim) * weights).sum(dim=2).mean()

    def dense_loss(self, student: torch.Tensor, target: torch.Tensor,
                   valid: torch.Tensor) -> torch.Tensor:
        """Mean 1 - cos over the valid point tokens (0 when none is valid).

        Under several processes the mean is over the valid tokens of all ranks: each rank
        returns world_size x (its sum) / (the total count), so the ranks' mean (DDP's
        gradient average) is the one-process mean, however the valid tokens are spread.
        """
        cos = F.cosine_similarity(student, target.to(student.dtype), dim=-1)
        w = valid.to(student.dtype)
        total = sum_over_ranks(w.sum())
        world = dist.get_world_size() if dist.is_distributed() else 1
        return world * ((1 - cos) * w).sum() / total.clamp(min=1)

    def forward(self, concepts: torch.Tensor, targets: dict[str, torch.Tensor],
                prefix_concepts: torch.Tensor | None = None,
                dense: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
        """concepts (B,K,D); targets from the teacher -> dict of weighted `loss_*` terms.

        `prefix_concepts` are the concepts in the prefix-token width when it differs from D;
        `dense` is (student (B,N,D), target (B,N,D), valid (B,N)) for the dense term.
        """
        given = {k for k, v in targets.items() if v is not None}
        missing = self.needs - given
        if self.concept_target == 'auto' and not given & {'prefix_tokens', 'patch_tokens'}:
            missing.add('prefix_tokens or patch_tokens')
        if missing:
            raise KeyError(f'ConceptAlignmentLoss: the active terms need teacher outputs '
                           f'{sorted(missing)} but only {sorted(targets)} were given (configure '
                           f'a mapping network for prefix tokens; with a teacher-feature cache, '
                           f'cache the tokens: tools/extract_teacher_features.py --tokens '
                           f'patch|prefix and LoadTeacherFeatures(tokens=True))')
        if self.dense_weight and dense is None:
            raise KeyError('ConceptAlignmentLoss: dense_weight > 0 needs the dense student / '
                           'target features (the distiller computes them from pixel_uv)')
        targets = {k: v.detach() for k, v in targets.items() if v is not None}
        losses = {}
        pooled = pool_concepts(concepts)
        target = self.concept_target
        if target == 'auto':
            target = 'prefix_tokens' if 'prefix_tokens' in targets else 'patch_tokens'
        if target == 'prefix_tokens':
            student = concepts if prefix_concepts is None else prefix_concepts
            losses['loss_concept'] = self.concept_weight * self.token_loss(
                student, targets['prefix_tokens'])
        elif target == 'patch_tokens':
            losses['loss_concept'] = self.concept_weight * self.matched_patch_loss(
                concepts, targets['patch_tokens'])
        if self.token_weight:
            student = concepts if prefix_concepts is None else prefix_concepts
            losses['loss_token'] = self.token_weight * self.token_loss(
                student, targets['prefix_tokens'])
        if self.global_weight:
            losses['loss_global'] = self.global_weight * self.global_loss(
                pooled, targets['global'])
        if self.contrastive_weight:
            self.update_center(targets['global'])
            losses['loss_contrastive'] = self.contrastive_weight * self.contrastive_loss(
                pooled, targets['global'])
        if self.set_weight:
            losses['loss_set'] = self.set_weight * self.set_loss(concepts,
                                                                 targets['patch_tokens'])
        if self.dense_weight:
            student, dense_target, valid = dense
            losses['loss_dense'] = self.dense_weight * self.dense_loss(
                student, dense_target.detach(), valid)
        return losses
