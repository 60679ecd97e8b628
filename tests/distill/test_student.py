"""The student builder: query weights per arm, the fused training route equals the standard modules,
and every saved student (after training, or exported) gives ifsr's vectors in plain sentence-transformers,
with no weight on special tokens, while a next training stage starts from the weights as trained."""
import json

import datasets
import numpy as np
import pytest
import torch
from sentence_transformers import SparseEncoder

from ifsr.core.encoder import DocumentEncoder, QueryEncoder, load_mlm, special_ids
from ifsr.core.idf import load_idf
from ifsr.distill.student import (TRAINING_BIAS_FILE, build_student, document_columns, document_mlm, mlm_dir,
                                  query_weight_vector,
                                  save_student)
from ifsr.distill.trainer import train
from ifsr.exp.config import TrainConfig
from ifsr.serving.export import load_sparse_encoder, save_sparse_encoder

TEXTS = ["alveolar macrophages clear inhaled particles", "a short one", "heat flow over a flat plate wing"]
RAISE = 20.0


@pytest.fixture(scope="module")
def idf(tokenizer, idf_file):
    return load_idf(idf_file, tokenizer)


@pytest.fixture(scope="module")
def loud_dir(tokenizer, tmp_path_factory):
    """splade-tiny with the [CLS] and [SEP] output biases raised by RAISE: an MLM that scores them."""
    mlm = load_mlm("splade-tiny")
    with torch.no_grad():
        mlm.get_output_embeddings().bias[[tokenizer.cls_token_id, tokenizer.sep_token_id]] += RAISE
    path = tmp_path_factory.mktemp("loud") / "mlm"
    mlm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _doc_vectors(model: SparseEncoder) -> np.ndarray:
    with torch.no_grad():
        return model.encode_document(TEXTS, convert_to_tensor=True).to_dense().numpy()


def _bias(model: SparseEncoder) -> torch.Tensor:
    return document_mlm(model).auto_model.get_output_embeddings().bias.detach().clone()


def check_saved(path, tokenizer, idf) -> None:
    """SparseEncoder(path) alone gives ifsr's DocumentEncoder / QueryEncoder vectors, 0 on every special id."""
    st = SparseEncoder(str(path), device="cpu")
    doc, query = load_sparse_encoder(path)
    got = _doc_vectors(st)
    want = doc.encode(TEXTS, show_progress=False).toarray()
    special = special_ids(tokenizer)
    assert (got[:, special] == 0).all() and (want[:, special] == 0).all()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got > 0).sum() > 30
    q = st.encode_query(TEXTS, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(q, query.encode(TEXTS).toarray(), atol=1e-6)
    assert (q[:, special] == 0).all() and np.allclose(query.idf, query_weight_vector(idf, tokenizer, "idf").numpy())


def test_query_weights_per_arm(tokenizer, idf):
    w_idf, w_one = query_weight_vector(idf, tokenizer, "idf"), query_weight_vector(idf, tokenizer, "ones")
    special = tokenizer.all_special_ids
    assert (w_idf[special] == 0).all() and (w_one[special] == 0).all()
    cat = tokenizer.convert_tokens_to_ids("cat")
    assert w_idf[cat] == pytest.approx(float(idf[cat])) and w_one[cat] == 1.0


def test_the_loud_model_does_score_special_tokens(loud_dir, tokenizer, idf):
    """The premise of the tests below: in training (fused route, no zeroing) [CLS]/[SEP] get weight."""
    w = _doc_vectors(build_student(str(loud_dir), idf, "idf", 32, seed=0))
    assert (w[:, [tokenizer.cls_token_id, tokenizer.sep_token_id]] > 1).all()


def test_saved_student_gives_no_weight_to_special_tokens(loud_dir, tokenizer, idf, tmp_path):
    """The function `train` saves with: plain sentence-transformers loads ifsr's vectors back."""
    trained = build_student(str(loud_dir), idf, "idf", 32, seed=0)  # as `train` holds it after training
    document = document_mlm(trained)
    path = save_student(document.auto_model, document.tokenizer, idf, "idf", 32, tmp_path / "model")
    check_saved(path, tokenizer, idf)
    assert (_bias(trained) == load_mlm(str(loud_dir)).get_output_embeddings().bias).all()  # source untouched


def test_exported_model_gives_no_weight_to_special_tokens(loud_dir, tokenizer, idf, tmp_path):
    doc = DocumentEncoder.from_pretrained(str(loud_dir), max_length=32)
    path = save_sparse_encoder(doc, QueryEncoder(tokenizer, idf), tmp_path / "st")
    check_saved(path, tokenizer, idf)
    np.testing.assert_allclose(_doc_vectors(SparseEncoder(str(path), device="cpu")),
                               doc.encode(TEXTS, show_progress=False).toarray(), atol=1e-5)


def test_next_stage_starts_from_the_trained_weights(loud_dir, tokenizer, idf, tmp_path):
    """A saved student has the special biases baked off; building a student from it (the next
    training stage) puts the trained ones back, so training goes on exactly as from the unsaved model."""
    before = build_student(str(loud_dir), idf, "idf", 32, seed=0)
    document = document_mlm(before)
    path = save_student(document.auto_model, document.tokenizer, idf, "idf", 32, tmp_path / "model")
    kept = json.loads((tmp_path / "model" / "document_0_Transformer" / TRAINING_BIAS_FILE).read_text())
    assert kept["token_ids"] == special_ids(tokenizer).tolist()
    on_disk = SparseEncoder(str(path), device="cpu")
    assert (_bias(on_disk)[special_ids(tokenizer)] == -1.0e4).all()
    after = build_student(str(path), idf, "idf", 32, seed=0)
    assert torch.equal(_bias(after), _bias(before))
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    np.testing.assert_array_equal(_doc_vectors(after), _doc_vectors(before))


def test_fused_student_equals_the_standard_modules(idf):
    """The training route (FusedSpladeDocument) gives the standard Transformer + SpladePooling route's
    vectors and the same loss gradient on every MLM weight."""
    grads, vecs = [], []
    for fused in (True, False):
        model = build_student("splade-tiny", idf, "idf", 32, seed=0, fused=fused)
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0  # same forward on both routes
        feats = model.preprocess(TEXTS, task="document")
        w = model(feats)["sentence_embedding"]  # [3, V]
        (w.mean(0).pow(2).sum() + w[:, 2000:2100].sum()).backward()
        vecs.append(w.detach())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert torch.allclose(vecs[0], vecs[1], atol=1e-5) and (vecs[0] > 0).sum() > 30
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-4, rtol=1e-4), n


def test_mlm_dir_of_each_model_layout(splade_tiny_path, minilm_path, tmp_path):
    """A plain MLM folder is itself; all-MiniLM-L6-v2 is a sentence-transformers folder whose Transformer
    is the folder itself (modules.json path ""); a saved student is a Router whose document Transformer
    is a subfolder."""
    assert mlm_dir("splade-tiny") == splade_tiny_path
    assert mlm_dir("all-MiniLM-L6-v2") == minilm_path
    saved = tmp_path / "student"
    (saved / "document_0_Transformer").mkdir(parents=True)
    (saved / "document_0_Transformer" / "tokenizer.json").write_text("{}")
    (saved / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                     "type": "sentence_transformers.base.modules.router.Router"}]))
    assert mlm_dir(str(saved)) == str(saved / "document_0_Transformer")


@pytest.mark.slow
def test_trained_student_gives_no_weight_to_special_tokens(loud_dir, tokenizer, idf, tmp_path):
    """End to end: one training step from the loud MLM, then the saved model in plain sentence-transformers."""
    rng = np.random.default_rng(0)
    rows = {"query": ["lung cell", "heat flow"], **{f"doc_{g}": [TEXTS[(g + i) % 3] for i in range(2)] for g in range(3)},
            "label": [rng.random((2, 3)).astype(np.float32).tolist() for _ in range(2)]}
    cfg = TrainConfig(student=str(loud_dir), steps=1, batch_size=2, max_length=32, warmup_steps=0, lr=1e-4,
                      save_steps=10, logging_steps=1)
    path = train(cfg, datasets.Dataset.from_dict(rows), idf, tmp_path / "run")
    check_saved(path, tokenizer, idf)
    assert (_bias(build_student(str(path), idf, "idf", 32, seed=0))[[tokenizer.cls_token_id, tokenizer.sep_token_id]] > 1).all()


@pytest.mark.parametrize("fused", [True, False])
def test_document_columns_are_those_of_the_full_vectors(loud_dir, tokenizer, idf, fused):
    """`document_columns` gives the columns asked for (in the order asked, special tokens live as in training)
    of encode_document's full [n, V] vectors, whatever the batching."""
    model = build_student(str(loud_dir), idf, "idf", 32, seed=0, fused=fused)
    model.eval()
    full = torch.from_numpy(_doc_vectors(model))  # [3, V]
    active = full.any(dim=0).nonzero().squeeze(1)
    rng = np.random.default_rng(0)
    cols = torch.cat([active, torch.from_numpy(special_ids(tokenizer)), torch.from_numpy(rng.choice(full.shape[1], 200))])
    cols = cols[torch.from_numpy(rng.permutation(len(cols)))]  # unsorted, specials and inactive ids among them
    got = document_columns(model, TEXTS, cols, batch_size=2)  # [3, C]
    assert got.shape == (len(TEXTS), len(cols))
    assert torch.allclose(got, full[:, cols], atol=1e-5)
    assert (got > 0).sum() > 30 and (got[:, torch.isin(cols, torch.tensor([tokenizer.cls_token_id]))] > 0).all()
