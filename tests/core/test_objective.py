"""Losses on hand-computed micro-examples, and against independent formulations."""
import math

import pytest
import torch

from ifsr.core.objective import (
    candidate_scores,
    ensemble_targets,
    flops,
    flops_per_slot,
    inference_free_loss,
    kl_distill,
    lambda_at,
    margin_mse,
    minmax_normalize,
)


def flops_idf_form(v: torch.Tensor, idf: torch.Tensor) -> torch.Tensor:
    """The equivalent form of the IDF-aware penalty on v = idf * w (SPEC §2), written independently:

        L = sum_j idf_j^-2 ( (1/N) sum_i v_ij )^2           v [N, V], idf [V] > 0
    """
    return (v.mean(dim=0).pow(2) / idf.pow(2)).sum()


def test_flops_by_hand():
    w = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # column means 2, 1 -> 4 + 1
    assert flops(w).item() == pytest.approx(5.0)


def test_flops_per_slot_by_hand():
    w = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])  # [B=2, G=2, V=1]
    assert flops_per_slot(w).item() == pytest.approx(2.0**2 + 3.0**2)  # slot means 2, 3
    assert flops(w.flatten(0, 1)).item() == pytest.approx(2.5**2)  # one batch mean 2.5
    with pytest.raises(ValueError, match="B, G, V"):
        flops_per_slot(w[0])


def test_flops_per_slot_is_the_sum_of_per_slot_terms():
    """Second formulation: a loop over slots, each slot's documents one FLOPS batch."""
    w, *_ = _batch(seed=3)
    by_loop = sum(sum(w[:, g, j].mean().item() ** 2 for j in range(w.shape[2])) for g in range(w.shape[1]))
    assert flops_per_slot(w).item() == pytest.approx(by_loop, rel=1e-6)
    assert torch.equal(flops_per_slot(w), w.mean(dim=0).pow(2).sum())  # the same ops as before, bit for bit


def test_lambda_quadratic_warmup():
    assert lambda_at(0, 0.1, 100) == 0.0
    assert lambda_at(50, 0.1, 100) == pytest.approx(0.025)
    assert lambda_at(100, 0.1, 100) == pytest.approx(0.1)
    assert lambda_at(500, 0.1, 100) == pytest.approx(0.1)
    assert lambda_at(3, 0.1, 0) == 0.1


def test_minmax_with_padding():
    s = torch.tensor([[1.0, 3.0, 2.0], [5.0, 4.0, 100.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    out = minmax_normalize(s, mask)
    assert torch.allclose(out, torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]]), atol=1e-5)


def test_ensemble_by_hand():
    dense = torch.tensor([[0.5, 0.7, 0.6]])
    sparse = torch.tensor([[10.0, 20.0, 30.0]])
    t = ensemble_targets(torch.stack([dense, sparse]), scale=30.0)
    # dense -> [0, 1, .5], sparse -> [0, .5, 1]; mean [0, .75, .75]; x30
    assert torch.allclose(t, torch.tensor([[0.0, 22.5, 22.5]]), atol=1e-3)
    raw = ensemble_targets(torch.stack([dense, sparse]), normalize=False)
    assert torch.allclose(raw, torch.tensor([[10.5, 20.7, 30.6]]))
    with pytest.raises(ValueError):
        ensemble_targets(dense)


def test_kl_by_hand():
    teacher = torch.tensor([[0.0, 0.0]])  # p = (1/2, 1/2)
    student = torch.tensor([[0.0, math.log(3.0)]])  # q = (1/4, 3/4)
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert kl_distill(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert kl_distill(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_padding_is_ignored_and_finite():
    student = torch.tensor([[0.3, -1.0, 7.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 1.0, 50.0]])
    mask = torch.tensor([[True, True, False]])
    padded = kl_distill(student, teacher, mask)
    short = kl_distill(student[:, :2], teacher[:, :2])
    assert padded.item() == pytest.approx(short.item(), rel=1e-6)
    padded.backward()
    assert torch.isfinite(student.grad).all() and student.grad[0, 2] == 0


def test_margin_mse_by_hand():
    student = torch.tensor([[3.0, 1.0, 2.0]])
    teacher = torch.tensor([[5.0, 4.0, 1.0]])
    # student margins (2, 1), teacher margins (1, 4): errors (1, -3) -> (1 + 9) / 2
    assert margin_mse(student, teacher).item() == pytest.approx(5.0)


def _batch(seed=0, b=3, g=4, v=11):
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(b, g, v, generator=gen) * (torch.rand(b, g, v, generator=gen) > 0.5)
    binary = (torch.rand(b, v, generator=gen) > 0.6).float()
    idf = 0.1 + 5 * torch.rand(v, generator=gen)
    teacher = 30 * torch.rand(b, g, generator=gen)
    return w.requires_grad_(True), binary, idf, teacher


def test_idf_aware_flops_two_forms_same_gradient():
    w, binary, idf, teacher = _batch()
    lam = 0.7
    # Form A (the paper): IDF in the ranking score, FLOPS on raw w.
    a = inference_free_loss(binary * idf, w, teacher, lam)["loss"]
    (grad_a,) = torch.autograd.grad(a, w)
    # Form B: rewrite in v = idf * w; binary query; FLOPS on v weighted by 1/idf^2.
    v = idf * w
    rank_b = kl_distill(candidate_scores(binary, v), teacher)
    b = rank_b + lam * flops_idf_form(v.flatten(0, 1), idf)
    (grad_b,) = torch.autograd.grad(b, w)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert torch.allclose(grad_a, grad_b, atol=1e-6)
    # The trap (FLOPS on idf * w) is a different function: the test above would catch it.
    v = idf * w
    trap = kl_distill(candidate_scores(binary, v), teacher) + lam * flops(v.flatten(0, 1))
    (grad_trap,) = torch.autograd.grad(trap, w)
    assert not torch.allclose(grad_a, grad_trap, atol=1e-3)


def test_plain_arm_uses_unit_query_weights():
    w, binary, idf, teacher = _batch(seed=1)
    plain = inference_free_loss(binary, w, teacher, 0.0)["rank"]
    aware = inference_free_loss(binary * idf, w, teacher, 0.0)["rank"]
    assert plain.item() != pytest.approx(aware.item())
    manual = kl_distill(torch.einsum("bv,bgv->bg", binary, w), teacher)
    assert plain.item() == pytest.approx(manual.item(), rel=1e-6)


def test_loss_terms_and_bad_options():
    w, binary, idf, teacher = _batch()
    out = inference_free_loss(binary * idf, w, teacher, 0.5, flops_form="per_slot")
    assert set(out) == {"loss", "rank", "flops", "lambda"}
    assert out["loss"].item() == pytest.approx((out["rank"] + 0.5 * out["flops"]).item(), rel=1e-6)
    assert out["flops"].item() == pytest.approx(flops_per_slot(w).item(), rel=1e-6)
    with pytest.raises(ValueError):
        inference_free_loss(binary, w, teacher, 0.5, flops_form="slots")
    with pytest.raises(ValueError):
        inference_free_loss(binary, w, teacher, 0.5, rank_loss="ce")
    with pytest.raises(ValueError, match="temperature"):
        inference_free_loss(binary, w, teacher, 0.5, temperature=0.0)


def test_student_temperature_divides_the_ranking_scores_only():
    w, binary, idf, teacher = _batch()
    hot = inference_free_loss(binary * idf, w, teacher, 0.5, temperature=4.0)
    cold = inference_free_loss(binary * idf, w, teacher, 0.5)
    assert hot["rank"].item() == pytest.approx(kl_distill(candidate_scores(binary * idf, w) / 4.0, teacher).item())
    assert hot["rank"].item() != pytest.approx(cold["rank"].item())
    assert hot["flops"].item() == cold["flops"].item()  # FLOPS is on w, untouched by tau
    # by hand: scores [4, 0] at tau 2 are [2, 0]; a uniform teacher: KL = sum_i 0.5 * (log 0.5 - log p_i)
    s, t = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    want = 0.5 * (math.log(0.5) - math.log(1 / (1 + math.exp(-2.0)))) + 0.5 * (math.log(0.5) - math.log(1 / (1 + math.exp(2.0))))
    one_term = inference_free_loss(torch.ones(1, 1), s[:, :, None], t, 0.0, temperature=2.0)["rank"]
    assert one_term.item() == pytest.approx(want, rel=1e-6)


def test_masked_batch_flops_counts_real_documents_only():
    w, binary, idf, teacher = _batch()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 3] = False
    out = inference_free_loss(binary, w, teacher, 1.0, mask=mask)
    assert out["flops"].item() == pytest.approx(flops(w[mask]).item(), rel=1e-6)


def test_agrees_with_sentence_transformers():
    """Where the definitions coincide: FlopsLoss == flops; SparseDistillKLDivLoss(T=1) == kl_distill.

    They differ in what they score: sentence-transformers' KL loss scores (query, column) pairs from
    embeddings; ifsr takes the [B, G] score matrix, which also allows padding masks.
    """
    import sentence_transformers.sparse_encoder.losses as st
    w, binary, idf, teacher = _batch(seed=2)
    assert st.FlopsLoss(model=None).compute_loss_from_embeddings(w[:, 0]).item() == pytest.approx(
        flops(w[:, 0]).item(), rel=1e-6
    )
    q = binary * idf
    kl = st.SparseDistillKLDivLoss(model=None, temperature=1.0)
    theirs = kl.compute_loss_from_embeddings([q] + [w[:, g] for g in range(w.shape[1])], teacher)
    ours = kl_distill(candidate_scores(q, w), teacher)
    assert theirs.item() == pytest.approx(ours.item(), rel=1e-5)


def test_teacher_targets_take_any_list_of_named_teachers():
    """Teachers as a list: K named teachers in label order; a member alone, the weighted min-max ensemble
    (alpha = weights / sum) and the raw sum, against a hand computation with numpy."""
    import numpy as np

    from ifsr.core.objective import teacher_targets

    raw = torch.tensor([[[0.1, 0.5, 0.3], [10.0, 2.0, 6.0], [4.0, 4.0, 0.0]]])  # [B=1, K=3, G=3]
    names = ("dense", "sparse", "colbert")

    def minmax(x):
        x = np.asarray(x, dtype=np.float64)
        return (x - x.min()) / (x.max() - x.min() + 1e-6)

    r = raw[0].numpy()
    alone = teacher_targets(raw, "colbert", names=names)[0].numpy()
    np.testing.assert_allclose(alone, 30 * minmax(r[2]), rtol=1e-5)
    weighted = teacher_targets(raw, "ensemble-minmax", names=names, weights=[1.0, 1.0, 2.0])[0].numpy()
    np.testing.assert_allclose(weighted, 30 * (0.25 * minmax(r[0]) + 0.25 * minmax(r[1]) + 0.5 * minmax(r[2])), rtol=1e-5)
    equal = teacher_targets(raw, "ensemble-minmax", names=names)[0].numpy()
    np.testing.assert_allclose(equal, 30 * (minmax(r[0]) + minmax(r[1]) + minmax(r[2])) / 3, rtol=1e-5)
    np.testing.assert_allclose(teacher_targets(raw, "ensemble-raw", names=names)[0].numpy(), r.sum(0), rtol=1e-6)
    # the default two teachers are the first two of the list: the same targets as before the list
    two = raw[:, :2]
    np.testing.assert_allclose(teacher_targets(two, "ensemble-minmax").numpy(),
                               teacher_targets(raw, "ensemble-minmax", names=names, weights=[1, 1, 1e-12]).numpy(),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="K=2"):
        teacher_targets(raw, "dense")  # three teachers' scores under the default two names
    with pytest.raises(ValueError, match="colbert"):
        teacher_targets(raw, "bm25", names=names)
    with pytest.raises(ValueError, match="weights"):
        teacher_targets(raw, "ensemble-minmax", names=names, weights=[1.0, 1.0])
