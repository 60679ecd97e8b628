"""Client-side query encoders for the latency study: what a search client runs per query.

Inference-free: tokenize (a fast path equal to the tokenizer, tested), drop specials, look up IDF, with
optional pruning of low-IDF tokens; `pisa_idf_query` turns that into a PISA query through one table.
Siamese: the document encoder run on the query (CPU, one query at a time).
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ifsr.core.encoder import special_ids
from ifsr.serving.base import vocab_terms

_PIECES = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")  # BERT pre-tokens of lowercased printable ASCII
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\[]")  # control chars (and '[': added tokens)


def raw_token_ids(tokenizer) -> Callable[[str], list[int]]:
    """text -> token ids (order and repeats kept, no [CLS]/[SEP]) equal to the tokenizer's (tested), fast.

    For printable-ASCII text with an uncased BERT tokenizer, BERT's normalizer and pre-tokenizer reduce
    to lowercase + a regex split; whole-word pieces are looked up in the vocabulary, other pieces go
    through the WordPiece model alone. Any other text goes through the full Rust tokenizer."""
    backend = tokenizer.backend_tokenizer
    norm, pre = backend.normalizer, backend.pre_tokenizer
    bert = type(norm).__name__ == "BertNormalizer" and norm.lowercase and type(pre).__name__ == "BertPreTokenizer"
    words = {t: i for t, i in tokenizer.get_vocab().items() if not t.startswith("##")}
    model = backend.model

    def ids_of(text: str) -> list[int]:
        if not (bert and text.isascii()) or _CONTROL.search(text):
            return backend.encode(text, add_special_tokens=False).ids
        raw = []
        for piece in _PIECES.findall(text.lower()):
            hit = words.get(piece)
            raw.extend([hit] if hit is not None else [t.id for t in model.tokenize(piece)])
        return raw
    return ids_of


def fast_token_ids(tokenizer) -> Callable[[str], np.ndarray]:
    """Distinct non-special token ids, ascending: `QueryEncoder.token_ids` through `raw_token_ids`."""
    raw_ids = raw_token_ids(tokenizer)
    special = np.zeros(len(tokenizer), dtype=bool)
    special[special_ids(tokenizer)] = True

    def ids_of(text: str) -> np.ndarray:
        ids = np.unique(np.asarray(raw_ids(text), dtype=np.int64))
        return ids[~special[ids]]
    return ids_of


def inference_free_query(tokenizer, idf: np.ndarray, min_idf: float = 0.0,
                         max_terms: int | None = None) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """text -> (ids, idf weights); optional pruning: drop tokens with idf < min_idf, keep the
    `max_terms` highest-idf tokens. Without pruning this is exactly the QueryEncoder vector."""
    if max_terms is not None and max_terms <= 0:
        raise ValueError(f"max_terms must be positive, got {max_terms}")
    ids_of, idf = fast_token_ids(tokenizer), np.asarray(idf, dtype=np.float32)

    def encode(text: str) -> tuple[np.ndarray, np.ndarray]:
        ids = ids_of(text)
        w = idf[ids]
        if min_idf > 0:
            ids, w = ids[w >= min_idf], w[w >= min_idf]
        if max_terms is not None and len(ids) > max_terms:
            top = np.argsort(-w, kind="stable")[:max_terms]
            ids, w = ids[top], w[top]
        return ids, w
    return encode


def pisa_idf_query(tokenizer, idf: np.ndarray, query_scale: float, min_idf: float = 0.0,
                   max_terms: int | None = None, folded: bool = False) -> Callable[[str], dict[str, float]]:
    """text -> PISA query {token: round(idf * query_scale)} through a table built once: the whole
    inference-free query side is `raw_token_ids` and table lookups (pruning as above). folded=True:
    the index holds idf_j * w_j(d) already, so every kept token gets weight 1 (same scores)."""
    if max_terms is not None and max_terms <= 0:
        raise ValueError(f"max_terms must be positive, got {max_terms}")
    ids_of, terms = raw_token_ids(tokenizer), vocab_terms(tokenizer)
    idf = np.asarray(idf, dtype=np.float32)
    scaled = np.rint(idf.astype(np.float64) * query_scale)
    keep = (scaled > 0) & (idf >= min_idf)
    keep[special_ids(tokenizer)] = False
    table = {t: (terms[t], 1.0 if folded else float(scaled[t])) for t in np.flatnonzero(keep).tolist()}
    rank = {t: (-float(idf[t]), t) for t in table}  # max_terms order: idf desc, then id (as above)

    def encode(text: str) -> dict[str, float]:
        ids = [t for t in set(ids_of(text)) if t in table]
        if max_terms is not None and len(ids) > max_terms:
            ids = sorted(ids, key=rank.__getitem__)[:max_terms]
        return dict(table[t] for t in ids)
    return encode


def siamese_query(doc_encoder) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """text -> (ids, weights) from the document encoder run on the query (CPU, one query)."""
    tok = doc_encoder.tokenizer

    @torch.inference_mode()
    def encode(text: str) -> tuple[np.ndarray, np.ndarray]:
        enc = tok(text, truncation=True, max_length=doc_encoder.max_length, return_tensors="pt")
        w = doc_encoder(enc["input_ids"], enc["attention_mask"])[0]  # [V]
        ids = torch.nonzero(w).ravel()
        return ids.numpy(), w[ids].numpy()
    return encode


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
