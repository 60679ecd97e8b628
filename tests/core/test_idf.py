"""IDF: the formula on a hand-computed corpus, the shipped MS MARCO file, and bad files."""
import json
import math

import numpy as np
import pytest

from ifsr.core.idf import document_frequencies, idf_from_df, load_idf, save_idf

N_MSMARCO = 8_841_823


def test_idf_formula_by_hand():
    idf = idf_from_df(np.array([0, 1, 2, 4]), n_docs=4, unseen=1.0)
    assert idf[0] == 1.0
    assert idf[1] == pytest.approx(math.log(1 + 3.5 / 1.5))
    assert idf[2] == pytest.approx(math.log(1 + 2.5 / 2.5))
    assert idf[3] == pytest.approx(math.log(1 + 0.5 / 4.5))
    with pytest.raises(ValueError):
        idf_from_df(np.array([5]), n_docs=4)


def test_tiny_corpus_counts_each_token_once_and_no_specials(tokenizer):
    corpus = ["cat cat cat", "cat dog", "[CLS] dog [SEP] bird"]
    df, n = document_frequencies(corpus, tokenizer)
    cat, dog, bird = tokenizer.convert_tokens_to_ids(["cat", "dog", "bird"])
    assert n == 3 and (df[cat], df[dog], df[bird]) == (2, 2, 1)
    assert df[tokenizer.all_special_ids].sum() == 0
    idf = idf_from_df(df, n, unseen=1.0)  # IDF of any corpus: its document frequencies, then the formula
    assert idf[bird] == pytest.approx(math.log(1 + 2.5 / 1.5))
    assert idf[tokenizer.convert_tokens_to_ids("fish")] == 1.0


def test_shipped_msmarco_file_obeys_the_formula(idf_file, tokenizer):
    idf = load_idf(idf_file, tokenizer).astype(np.float64)
    assert idf.max() == pytest.approx(15.5895, abs=1e-4)
    assert idf.max() == pytest.approx(math.log(1 + (N_MSMARCO - 1 + 0.5) / 1.5), abs=1e-5)  # df = 1
    seen = idf != 1.0
    df = (N_MSMARCO + 1) / np.exp(idf[seen]) - 0.5  # the formula inverted
    assert (df > 0.99).all() and (df < N_MSMARCO + 0.01).all()
    # integer document frequencies, up to the file's float32 arithmetic: log(1 + x) in float32 has an
    # absolute error of about ulp(1.0) = 1.2e-7, so |d df| = df * |d idf| <= df * 2.4e-7
    assert (np.abs(df - np.round(df)) <= 0.01 + 2.4e-7 * df).all()
    assert np.median(np.abs(df - np.round(df))) < 0.01
    assert idf[tokenizer.convert_tokens_to_ids("the")] < 0.2 < idf[tokenizer.convert_tokens_to_ids("macrophage")]


def test_roundtrip_and_bad_files(tokenizer, tmp_path):
    idf = np.linspace(0.5, 3.0, len(tokenizer)).astype(np.float32)
    path = tmp_path / "idf.json"
    save_idf(path, idf, tokenizer)
    np.testing.assert_array_equal(load_idf(path, tokenizer), idf)
    table = json.loads(path.read_text())

    del table["cat"]
    table["not-a-token"] = 1.0
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match=r"1 missing .*'cat'.*1 extra"):
        load_idf(path, tokenizer)
    table["cat"] = -2.0
    del table["not-a-token"]
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match="'cat' has weight -2.0"):
        load_idf(path, tokenizer)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_idf(path, tokenizer)
    path.write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_idf(path, tokenizer)
    with pytest.raises(FileNotFoundError):
        load_idf(tmp_path / "absent.json", tokenizer)
