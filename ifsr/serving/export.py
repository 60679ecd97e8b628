"""Save and load an inference-free model in two layouts users already have tools for.

(a) A sentence-transformers `SparseEncoder` directory, built from its own modules:
      query route    = SparseStaticEmbedding(idf, frozen)               (no model at query time)
      document route = Transformer(fill-mask) + SpladePooling(max, relu)
    `SparseEncoder(path).encode_query / encode_document` then give ifsr's vectors.
(b) The OpenSearch layout: a Hugging Face masked-LM directory plus `idf.json` keyed by token string.

SpladePooling has no notion of special tokens, so the exported document model carries ifsr's
"special tokens are zeroed" rule in its weights: their MLM output bias is set to SPECIAL_BIAS, which
no real logit can overcome, so ReLU sends them to exactly 0. The query route gets idf 0 there.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch

from ifsr.core.idf import load_idf, save_idf
from ifsr.core.encoder import DocumentEncoder, QueryEncoder, load_tokenizer

SPECIAL_BIAS = -1.0e4


def _special_ids(tokenizer) -> list[int]:
    return sorted(set(tokenizer.all_special_ids))


def bake_special_zeroing(doc: DocumentEncoder) -> DocumentEncoder:
    """A copy of `doc` whose MLM head can never activate special tokens (bias = SPECIAL_BIAS)."""
    baked = copy.deepcopy(doc)
    head = baked.mlm.get_output_embeddings()
    if getattr(head, "bias", None) is None:
        raise ValueError(f"{type(baked.mlm).__name__}'s output layer has no bias to carry special-token zeroing")
    with torch.no_grad():
        head.bias[_special_ids(doc.tokenizer)] = SPECIAL_BIAS
    return baked


def save_opensearch(doc: DocumentEncoder, query: QueryEncoder, path: str | os.PathLike) -> Path:
    """OpenSearch layout: HF model directory (special tokens baked off) + `idf.json`."""
    path = Path(path)
    bake_special_zeroing(doc).save_pretrained(path)
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
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer

    path = Path(path)
    hf_dir = path / "_hf_document_model"
    save_opensearch(doc, query, hf_dir)
    idf = torch.tensor(query.idf, dtype=torch.float32)  # [V]
    idf[_special_ids(query.tokenizer)] = 0.0  # the query route drops special tokens too
    query_module = SparseStaticEmbedding(tokenizer=query.tokenizer, weight=idf, frozen=True)
    doc_module = Transformer(str(hf_dir), transformer_task="fill-mask", max_seq_length=doc.max_length)
    pooling = SpladePooling(pooling_strategy="max", activation_function="relu")
    router = Router.for_query_document(query_modules=[query_module], document_modules=[doc_module, pooling])
    SparseEncoder(modules=[router], similarity_fn_name="dot").save(str(path))
    for f in sorted(hf_dir.iterdir()):
        f.unlink()
    hf_dir.rmdir()
    return path


def load_sparse_encoder(path: str | os.PathLike) -> tuple[DocumentEncoder, QueryEncoder]:
    """Read a SparseEncoder directory written by `save_sparse_encoder` back into ifsr's classes."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, Transformer

    st = SparseEncoder(str(path), device="cpu")
    modules = [m for route in st[0].sub_modules.values() for m in route]
    static = next((m for m in modules if isinstance(m, SparseStaticEmbedding)), None)
    mlm = next((m for m in modules if isinstance(m, Transformer)), None)
    if static is None or mlm is None:
        raise ValueError(f"{path}: expected a Router with a SparseStaticEmbedding query route and an MLM document route")
    doc = DocumentEncoder(mlm.auto_model, mlm.tokenizer, max_length=mlm.max_seq_length)
    return doc, QueryEncoder(static.tokenizer, static.weight.detach().cpu().numpy().astype(np.float32))


def load_model(path_or_name: str, idf_path: str | os.PathLike | None = None, max_length: int = 512):
    """Any saved layout or a model name: SparseEncoder dir, OpenSearch dir, or an MLM + `idf_path`."""
    p = Path(path_or_name)
    if (p / "modules.json").is_file():
        return load_sparse_encoder(p)
    if (p / "idf.json").is_file():
        return load_opensearch(p, max_length=max_length)
    if idf_path is None:
        raise ValueError(f"{path_or_name}: not a saved ifsr model; pass idf_path to pair the MLM with an IDF table")
    doc = DocumentEncoder.from_pretrained(path_or_name, max_length=max_length)
    return doc, QueryEncoder(load_tokenizer(path_or_name), load_idf(idf_path, doc.tokenizer))
