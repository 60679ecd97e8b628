"""The engine interface: an optional dependency, construction from document vectors, one query at a time.

In the style of ir_measures' providers: an engine class names itself (`name`), says whether its
optional package imports (`is_available()`, without raising), and is built from what it indexes:
- `Engine` (learned sparse vectors): `Engine.from_docs(docs CSR [n, V], k, **options)`, then
  `search_ids(ids, weights) -> (rows int64, scores float32)` for one query given as vocabulary ids
  and float weights; at most k hits, score desc then row asc (rows are document rows of `docs`);
- `TextEngine` (raw text, e.g. PISA's BM25): `from_texts(texts, k, **options)`, then `search(text)`.
`approximate` says whether an engine gives up exactness for speed by design (issue 31).
The registry of vector engines is `ifsr.serving.engines.ENGINES`.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import ClassVar

import numpy as np
import scipy.sparse as sp


class EngineBase(ABC):
    """What every engine declares: its name and the optional module it needs (None: none)."""

    name: ClassVar[str]
    requires: ClassVar[str | None] = None  # module imported lazily, e.g. "pyterrier_pisa"
    package: ClassVar[str | None] = None  # the pip package that provides it
    # True: its results may differ from exact scoring by design (pruned or clustered search: Seismic, two-phase),
    # beyond the rounding of quantized scores (PISA, BMP, Lucene: False; the flag is per class, so BMP's
    # alpha, beta < 1, which also prune, are not marked by it)
    approximate: ClassVar[bool] = False
    k: int

    @classmethod
    def dependency(cls) -> ModuleType | None:
        """The optional module, imported now (ImportError with the pip command when it is missing)."""
        if cls.requires is None:
            return None
        try:
            return importlib.import_module(cls.requires)
        except ImportError as e:
            raise ImportError(f"the {cls.name} engine needs {cls.package}: pip install {cls.package}") from e

    @classmethod
    def is_available(cls) -> bool:
        """Whether the optional dependency imports (always True for an engine that needs none)."""
        try:
            cls.dependency()
        except ImportError:
            return False
        return True


class Engine(EngineBase):
    """An index over learned-sparse document vectors, searched one query at a time.

    `query_options` names the options that act at query time only (e.g. BMP's alpha, beta): an index
    built once serves every value of them through `with_query_options` (a copy; the index is shared)."""

    query_options: ClassVar[tuple[str, ...]] = ()

    def with_query_options(self, **options) -> Engine:
        """A copy of this engine searching with other query-time options (ValueError for any other)."""
        unknown = sorted(set(options) - set(self.query_options))
        if unknown:
            raise ValueError(f"{self.name}: {unknown} are not query-time options; those are {list(self.query_options)}")
        other = copy.copy(self)
        other.__dict__.update(options)
        return other

    @classmethod
    @abstractmethod
    def from_docs(cls, docs: sp.csr_matrix, k: int = 10, **options) -> Engine:
        """Index `docs` (CSR [n, V], row i = document i) and return the engine, ready for queries."""

    @abstractmethod
    def search_ids(self, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows int64, scores float32) for one query: vocabulary ids and their float weights."""


class TextEngine(EngineBase):
    """An index over raw document text (the engine tokenizes documents and queries itself)."""

    @classmethod
    @abstractmethod
    def from_texts(cls, texts: Sequence[str], k: int = 10, **options) -> TextEngine:
        """Index `texts` (row i = document i) and return the engine, ready for queries."""

    @abstractmethod
    def search(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows int64, scores float32) for one query text."""


def vocab_terms(tokenizer) -> list[str]:
    """Token string of every vocabulary id, in id order."""
    return tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))


@contextlib.contextmanager
def silenced_native_output(enabled: bool) -> Iterator[None]:
    """Silence native-code logging (PISA's spdlog, Seismic's build log write to file descriptors 1
    and 2) while `enabled`."""
    if not enabled:
        yield
        return
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1), os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
