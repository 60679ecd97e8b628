"""Inverse document frequency: the whole query side of an inference-free retriever.

    idf(t) = ln(1 + (N - df_t + 0.5) / (df_t + 0.5))                     (BM25's IDF, SPEC §1)

df_t counts the documents containing token t at least once (no special tokens, no truncation).
Tokens never seen get a default weight (1.0 in the released MS MARCO file).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ifsr.core.encoder import special_ids
from ifsr.jsonl import not_utf8

UNSEEN_DEFAULT = 1.0
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the largest weight a query vector can hold


def idf_from_df(df: np.ndarray, n_docs: int, unseen: float = UNSEEN_DEFAULT) -> np.ndarray:
    """idf = ln(1 + (N - df + 0.5)/(df + 0.5)) elementwise; entries with df == 0 get `unseen`."""
    if n_docs <= 0:
        raise ValueError(f"n_docs must be positive, got {n_docs}")
    df = np.asarray(df, dtype=np.float64)  # [V]
    if (df < 0).any() or (df > n_docs).any():
        raise ValueError("document frequencies must lie in [0, n_docs]")
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))  # [V]
    return np.where(df > 0, idf, unseen).astype(np.float32)


def document_frequencies(
    texts: Iterable[str], tokenizer, batch_size: int = 1024, show_progress: bool = False
) -> tuple[np.ndarray, int]:
    """Count, for every vocabulary id, how many texts contain it (each token once per text).

    Special tokens are not counted and texts are never truncated. Returns (df [V], N).
    """
    vocab_size = len(tokenizer)
    df = np.zeros(vocab_size, dtype=np.int64)  # [V]
    n = 0
    texts = list(texts)
    bar = tqdm(total=len(texts), desc="document frequencies", disable=not show_progress)
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        enc = tokenizer(chunk, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        for ids in enc:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        n += len(chunk)
        bar.update(len(chunk))
    bar.close()
    df[special_ids(tokenizer)] = 0
    return df, n


def save_idf(path: str | os.PathLike, idf: np.ndarray, tokenizer) -> None:
    """Write `{token string: idf}` for the whole vocabulary (the OpenSearch `idf.json` layout)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if len(idf) != len(tokens):
        raise ValueError(f"idf has {len(idf)} entries, tokenizer vocabulary has {len(tokens)}")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({t: float(w) for t, w in zip(tokens, idf)}, f, ensure_ascii=False)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return out


def _key_position(text: str, key: str) -> tuple[int, int]:
    """1-based (line, column) of the second occurrence of `key` as an object key in JSON `text`
    (found by scanning with the decoder, so escaped spellings count too); (1, 0) if not found."""
    seen = 0
    i = text.find('"')
    while i != -1:
        try:
            s, end = json.decoder.scanstring(text, i + 1)
        except ValueError:
            break
        rest = text[end:end + 64].lstrip()
        if s == key and rest.startswith(":"):
            seen += 1
            if seen == 2:
                return text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i)
        i = text.find('"', end)
    return 1, 0


def load_idf(path: str | os.PathLike, tokenizer) -> np.ndarray:
    """Read an `idf.json` (token string -> positive number; special tokens may be 0) into a float32 vector [V].

    The file must cover the tokenizer's vocabulary exactly: a missing or extra token is an error
    that says how many (and shows a few), since a silent mismatch would shift every query weight.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDF file not found: {path}") from None
    except UnicodeDecodeError:
        raise not_utf8(Path(path), "an object of token -> idf") from None
    try:
        table = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected an object of token -> idf") from None
    except _DuplicateKey as e:
        line, col = _key_position(text, e.key)
        raise ValueError(f"{path}:{line}: token {e.key!r} appears twice (again at column {col}); "
                         f"expected an object of token -> idf with each token once") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a JSON object of token -> idf, got {type(table).__name__}")
    vocab = tokenizer.get_vocab()  # token -> id
    missing = sorted(set(vocab) - set(table), key=vocab.get)
    extra = sorted(set(table) - set(vocab))
    if missing or extra:
        raise ValueError(
            f"{path}: IDF tokens do not match the tokenizer vocabulary ({len(vocab)} tokens): "
            f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} extra (e.g. {extra[:5]})"
        )
    idf = np.zeros(len(tokenizer), dtype=np.float32)  # [V]
    special = set(special_ids(tokenizer).tolist())  # never in a query: a saved student writes 0 there
    for token, weight in table.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0 \
                or (weight == 0 and vocab[token] not in special):
            raise ValueError(f"{path}: token {token!r} has weight {weight!r}; expected a positive number "
                             "(0 only on special tokens)")
        with np.errstate(over="ignore"):
            overflows = not np.isfinite(np.float32(weight))
        if overflows:  # finite in JSON, inf once stored as float32 (and every score with it)
            raise ValueError(f"{path}: token {token!r} has weight {weight!r}, beyond float32 (at most "
                             f"{FLOAT32_MAX:.4g}); expected an IDF-sized positive number")
        idf[vocab[token]] = weight
    return idf
