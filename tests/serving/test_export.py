"""The saved layouts (SparseEncoder directory, OpenSearch directory) give back the same vectors."""
import numpy as np
import pytest
from conftest import SAMPLE_TEXTS
from sentence_transformers import SparseEncoder

from ifsr.core.encoder import QueryEncoder, special_ids
from ifsr.core.names import MAX_LENGTH
from ifsr.serving.export import LENGTH_FILE, load_model, load_sparse_encoder, save_opensearch, save_sparse_encoder


def test_saved_layouts_give_the_same_vectors(doc, query, tmp_path):
    want_d = doc.encode(SAMPLE_TEXTS, show_progress=False).toarray()
    want_q = query.encode(SAMPLE_TEXTS).toarray()
    st = SparseEncoder(str(save_sparse_encoder(doc, query, tmp_path / "st")), device="cpu")
    got_d = st.encode_document(SAMPLE_TEXTS, convert_to_tensor=True).to_dense().numpy()
    got_q = st.encode_query(SAMPLE_TEXTS, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(got_d, want_d, atol=1e-5)
    np.testing.assert_allclose(got_q, want_q, atol=1e-6)
    for layout in ("st", "os"):
        if layout == "os":
            save_opensearch(doc, query, tmp_path / "os")
        d2, q2 = load_model(str(tmp_path / layout), max_length=doc.max_length)
        np.testing.assert_allclose(d2.encode(SAMPLE_TEXTS, show_progress=False).toarray(), want_d, atol=1e-5)
        np.testing.assert_allclose(q2.encode(SAMPLE_TEXTS).toarray(), want_q, atol=1e-6)
    with pytest.raises(ValueError, match="idf_path"):
        load_model(str(tmp_path))


def test_max_length_saved_or_asked(doc, query, tmp_path):
    """Both layouts keep their length (issue 31: an OpenSearch folder reloaded at 512); an explicit one wins;
    an OpenSearch folder that records none (written elsewhere) loads at MAX_LENGTH."""
    path = save_sparse_encoder(doc, query, tmp_path / "st")
    assert load_sparse_encoder(path)[0].max_length == load_model(str(path))[0].max_length == 64
    assert load_model(str(path), max_length=16)[0].max_length == 16
    os_dir = save_opensearch(doc, query, tmp_path / "os")
    assert load_model(str(os_dir))[0].max_length == 64 and load_model(str(os_dir), max_length=16)[0].max_length == 16
    (os_dir / LENGTH_FILE).unlink()
    assert load_model(str(os_dir))[0].max_length == MAX_LENGTH == 512
    (os_dir / LENGTH_FILE).write_text('{"max_seq_length": 0}')
    with pytest.raises(ValueError, match=r"sentence_bert_config\.json: max_seq_length 0; expected a positive"):
        load_model(str(os_dir))


def test_opensearch_export_of_a_trained_student_loads_back(doc, query, tmp_path):
    """A trained student's query route has idf 0 on the special tokens; its OpenSearch export must load
    back (load_idf once refused any weight <= 0) and give the same query vectors."""
    idf = query.idf.copy()
    idf[special_ids(query.tokenizer)] = 0.0
    student_query = QueryEncoder(query.tokenizer, idf)
    _, q2 = load_model(str(save_opensearch(doc, student_query, tmp_path / "os")))
    np.testing.assert_array_equal(q2.encode(SAMPLE_TEXTS).toarray(), student_query.encode(SAMPLE_TEXTS).toarray())
