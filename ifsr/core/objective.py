"""The paper's losses as pure functions of tensors (SPEC §2, §3).

Shapes: B queries, G candidates per query (slot 0 = positive), V vocabulary, K teachers.
A candidate mask [B, G] (True = real) lets queries carry different candidate counts.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ifsr.core.names import ENSEMBLES, RAW_SUM, TEACHER_NAMES

NORM_EPS = 1e-6  # min-max denominator guard (SPEC §3)


def flops(w: Tensor) -> Tensor:
    """FLOPS regularizer (Paria et al. 2020):  L = sum_j ( (1/N) sum_i w_ij )^2   over w [N, V].

    Any trailing shape works: the mean is over dim 0 only and the squares are summed over the rest.
    """
    return w.mean(dim=0).pow(2).sum()


def flops_per_slot(w: Tensor) -> Tensor:
    """Reference-code variant: w [B, G, V] laid out per query; one FLOPS term per slot g, summed.

    `flops` over the queries (dim 0) of each slot: the mean gives [G, V], summed over slots and vocabulary.
    About G times `flops(w.flatten(0, 1))`, so lambda does not transfer between the two forms.
    """
    if w.dim() != 3:
        raise ValueError(f"flops_per_slot needs w [B, G, V], got shape {tuple(w.shape)}")
    return flops(w)


def lambda_at(step: int, lam: float, warmup_steps: int) -> float:
    """Quadratic warm-up of the FLOPS weight:  lambda_t = lambda * min(1, t / T)^2."""
    if warmup_steps <= 0:
        return lam
    return lam * min(1.0, step / warmup_steps) ** 2


def candidate_scores(q: Tensor, d: Tensor) -> Tensor:
    """Student scores s(q, d) = sum_j q_j w_j(d):  q [B, V], d [B, G, V] -> [B, G]."""
    return torch.einsum("bv,bgv->bg", q, d)


def minmax_normalize(scores: Tensor, mask: Tensor | None = None, eps: float = NORM_EPS) -> Tensor:
    """Per-query min-max over the candidate set:  (s - min_C s) / (max_C s - min_C s + eps).

    scores [B, G]; padded slots (mask False) neither set the min/max nor keep a value (set to 0).
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    lo = scores.masked_fill(~mask, float("inf")).amin(dim=1, keepdim=True)  # [B, 1]
    hi = scores.masked_fill(~mask, float("-inf")).amax(dim=1, keepdim=True)  # [B, 1]
    return ((scores - lo) / (hi - lo + eps)).masked_fill(~mask, 0.0)


def ensemble_targets(
    teacher_scores: Tensor,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    scale: float = 30.0,
    normalize: bool = True,
) -> Tensor:
    """Heterogeneous ensemble (SPEC §3):  t = S * sum_k alpha_k * minmax(s_k)   [K, B, G] -> [B, G].

    alpha defaults to 1/K. With `normalize=False` this is the ablation's raw sum  sum_k s_k  (no S,
    no alpha): a sparse teacher's dot products (tens) then swamp a dense teacher's cosines (< 1).
    """
    if teacher_scores.dim() != 3:
        raise ValueError(f"teacher_scores must be [K, B, G], got shape {tuple(teacher_scores.shape)}")
    if not normalize:
        return teacher_scores.sum(dim=0)
    k = teacher_scores.shape[0]
    alpha = torch.full((k,), 1.0 / k, dtype=teacher_scores.dtype) if weights is None else weights
    normed = torch.stack([minmax_normalize(s, mask) for s in teacher_scores])  # [K, B, G]
    return scale * torch.einsum("k,kbg->bg", alpha.to(normed), normed)




def teacher_targets(scores: Tensor, mode: str, mask: Tensor | None = None, scale: float = 30.0,
                    names: Sequence[str] = TEACHER_NAMES, weights: Sequence[float] | None = None) -> Tensor:
    """Targets for one ablation arm from raw teacher scores [B, K, G]: teacher k (named names[k]) at index k.

    mode: a member's name (that teacher alone), MINMAX (the paper: S * sum_k alpha_k * minmax(s_k), alpha_k =
    weights normalised to sum 1, default 1/K) or RAW_SUM (sum_k s_k). A single teacher is min-max normalized and
    scaled like one member of the ensemble, so every arm's targets live on the same [0, S] range.
    """
    if scores.dim() != 3 or scores.shape[1] != len(names):
        raise ValueError(f"scores must be [B, K={len(names)}, G] for teachers {list(names)}, got {tuple(scores.shape)}")
    per_teacher = scores.transpose(0, 1)  # [K, B, G]
    if mode in names:
        k = list(names).index(mode)
        return ensemble_targets(per_teacher[k:k + 1], mask, scale=scale)
    if mode not in ENSEMBLES:
        raise ValueError(f"teacher mode must be one of {list(names) + list(ENSEMBLES)}, got {mode!r}")
    alpha = None
    if weights is not None:
        if len(weights) != len(names) or any(not w > 0 for w in weights):
            raise ValueError(f"weights must be {len(names)} positive numbers, got {list(weights)}")
        alpha = torch.tensor([w / sum(weights) for w in weights], dtype=scores.dtype)
    return ensemble_targets(per_teacher, mask, weights=alpha, scale=scale, normalize=mode != RAW_SUM)


def kl_distill(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL( softmax(teacher) || softmax(student) ) over each query's candidates, mean over queries.

    student, teacher [B, G]; temperature 1 (the teacher's scale S acts as its inverse temperature).
    Padded candidates get probability 0 on both sides.
    """
    if mask is not None:
        student = student.masked_fill(~mask, float("-inf"))
        teacher = teacher.masked_fill(~mask, float("-inf"))
    log_p_t = torch.log_softmax(teacher.detach(), dim=1)  # [B, G]
    log_p_s = torch.log_softmax(student, dim=1)  # [B, G]
    kl = torch.where(log_p_t.isfinite(), log_p_t.exp() * (log_p_t - log_p_s), torch.zeros_like(log_p_t))
    return kl.sum(dim=1).mean()


def margin_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """MarginMSE (Hofstätter et al. 2020): mean over (q, neg) of ((s_pos - s_neg) - (t_pos - t_neg))^2.

    Slot 0 is the positive; slots 1.. are negatives.
    """
    diff = (student[:, :1] - student[:, 1:]) - (teacher[:, :1] - teacher[:, 1:]).detach()  # [B, G-1]
    valid = torch.ones_like(diff, dtype=torch.bool) if mask is None else mask[:, 1:]
    return diff.pow(2).masked_select(valid).mean()


def inference_free_loss(
    query_weights: Tensor,
    doc_weights: Tensor,
    teacher: Tensor,
    lam: float,
    mask: Tensor | None = None,
    flops_form: str = "batch",
    rank_loss: str = "kl",
    temperature: float = 1.0,
    flops_docs: Tensor | None = None,
) -> dict[str, Tensor]:
    """The paper's objective:  L = L_rank( s(q, d) / tau ) + lambda_t * L_FLOPS(w).

    query_weights [B, V]: idf_j on query tokens (IDF-aware arm) or 1 (plain-FLOPS arm).
    doc_weights [B, G, V]: raw document weights w; FLOPS stays on w, never on idf * w (SPEC trap 1).
    teacher [B, G]: target scores (e.g. `ensemble_targets`). temperature tau: the student's (1 in the
    paper); ranking is unchanged by it, but it sets the score scale the ranking term asks for (see
    ifsr.exp.config.TrainConfig.student_temperature). Returns every term by name, each still
    attached to the graph ("loss" = rank + lambda * flops), so a trainer may log or sum them.
    flops_docs: the documents FLOPS averages over, laid out like doc_weights ([N, G, V], real ones only;
    default doc_weights itself). Data-parallel training passes every rank's documents gathered with
    gradient: FLOPS squares a batch mean, so a per-rank FLOPS is not the one-process loss.
    """
    if flops_form not in ("batch", "per_slot"):
        raise ValueError(f"flops_form must be 'batch' or 'per_slot', got {flops_form!r}")
    if rank_loss not in ("kl", "margin_mse"):
        raise ValueError(f"rank_loss must be 'kl' or 'margin_mse', got {rank_loss!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scores = candidate_scores(query_weights, doc_weights) / temperature  # [B, G]
    rank = kl_distill(scores, teacher, mask) if rank_loss == "kl" else margin_mse(scores, teacher, mask)
    if flops_docs is not None:
        reg = flops(flops_docs.flatten(0, 1)) if flops_form == "batch" else flops_per_slot(flops_docs)
    elif flops_form == "batch":
        real = doc_weights.flatten(0, 1) if mask is None else doc_weights[mask]  # [N, V] real documents
        reg = flops(real)
    else:
        reg = flops_per_slot(doc_weights)
    return {"loss": rank + lam * reg, "rank": rank, "flops": reg, "lambda": torch.tensor(lam)}
