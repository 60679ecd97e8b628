"""Save and load an inference-free model in two layouts users already have tools for.

(a) A sentence-transformers `SparseEncoder` directory, written by the student builder
    (`ifsr.distill.student.save_student`, the same one training saves with):
      query route    = SparseStaticEmbedding(idf, frozen)               (no model at query time)
      document route = Transformer(fill-mask) + SpladePooling(max, relu)
    `SparseEncoder(path).encode_query / encode_document` then give ifsr's vectors.
(b) The OpenSearch layout: a Hugging Face masked-LM directory plus `idf.json` keyed by token string.

Neither layout has a notion of special tokens, so the exported document model carries ifsr's
"special tokens are zeroed" rule in its weights (`ifsr.distill.student.bake_special_zeroing`): their
MLM output bias is set to SPECIAL_BIAS, which no real logit can overcome, so ReLU sends them to
exactly 0. The query route gets idf 0 there.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, Transformer

from ifsr.core.encoder import DocumentEncoder, QueryEncoder, load_tokenizer
from ifsr.core.idf import load_idf, save_idf
from ifsr.distill.student import bake_special_zeroing, save_student


def save_opensearch(doc: DocumentEncoder, query: QueryEncoder, path: str | os.PathLike) -> Path:
    """OpenSearch layout: HF model directory (special tokens baked off) + `idf.json`."""
    path = Path(path)
    mlm = copy.deepcopy(doc.mlm)
    bake_special_zeroing(mlm, doc.tokenizer)
    mlm.save_pretrained(path)
    doc.tokenizer.save_pretrained(path)
    save_idf(path / "idf.json", query.idf, query.tokenizer)
    return path


def load_opensearch(path: str | os.PathLike, max_length: int = 512) -> tuple[DocumentEncoder, QueryEncoder]:
    path = Path(path)
    if not (path / "idf.json").is_file():
        raise FileNotFoundError(f"{path}: no idf.json (expected an OpenSearch-layout model directory)")
    doc = DocumentEncoder.from_pretrained(str(path), max_length=max_length)
    return doc, QueryEncoder(doc.tokenizer, load_idf(path / "idf.json", doc.tokenizer))


def save_sparse_encoder(doc: DocumentEncoder, query: QueryEncoder, path: str | os.PathLike) -> Path:
    """Write a directory that `sentence_transformers.SparseEncoder(path)` loads as this model."""
    return save_student(doc.mlm, doc.tokenizer, query.idf, "idf", doc.max_length, path)


def load_sparse_encoder(path: str | os.PathLike, max_length: int | None = None) -> tuple[DocumentEncoder, QueryEncoder]:
    """Read a SparseEncoder directory (`save_sparse_encoder`, or a trained student) into ifsr's classes;
    `max_length` None: the length saved with it."""
    st = SparseEncoder(str(path), device="cpu")
    modules = [m for route in st[0].sub_modules.values() for m in route]
    static = next((m for m in modules if isinstance(m, SparseStaticEmbedding)), None)
    mlm = next((m for m in modules if isinstance(m, Transformer)), None)
    if static is None or mlm is None:
        raise ValueError(f"{path}: expected a Router with a SparseStaticEmbedding query route and an MLM document route")
    length = mlm.max_seq_length if max_length is None else max_length
    doc = DocumentEncoder(mlm.auto_model, mlm.tokenizer, max_length=length)
    return doc, QueryEncoder(static.tokenizer, static.weight.detach().cpu().numpy().astype(np.float32))


def load_model(path_or_name: str, idf_path: str | os.PathLike | None = None, max_length: int | None = None):
    """Any saved layout or a model name: SparseEncoder dir, OpenSearch dir, or an MLM + `idf_path`.

    `max_length` None: a SparseEncoder directory's saved length, 512 for the other layouts."""
    p = Path(path_or_name)
    if (p / "modules.json").is_file():
        return load_sparse_encoder(p, max_length)
    max_length = 512 if max_length is None else max_length
    if (p / "idf.json").is_file():
        return load_opensearch(p, max_length=max_length)
    if idf_path is None:
        raise ValueError(f"{path_or_name}: not a saved ifsr model; pass idf_path to pair the MLM with an IDF table")
    doc = DocumentEncoder.from_pretrained(path_or_name, max_length=max_length)
    return doc, QueryEncoder(load_tokenizer(path_or_name), load_idf(idf_path, doc.tokenizer))
