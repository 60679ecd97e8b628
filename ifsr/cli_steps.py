"""The work behind `ifsr idf | train | export | index | search`, and the CLI's input checks.

The checks are cheap (no model loaded, nothing encoded) so that a bad flag fails before any work:
each raises `InputError` with what is wrong, which file, and what was expected. Heavy modules (torch,
sentence-transformers, the engines) are imported inside the functions that need them, so `ifsr --help`
and a refused flag answer at once.

An index folder (`build_index`) holds everything `search` needs, no model:
    index.json        engine, model, corpus, document count, max length
    doc_ids.json      document id of each row
    query/            the query side: the model's tokenizer + idf.json (token -> idf)
    docs.npz          CSR document vectors [n, V] (exact, seismic: Seismic is rebuilt from it at search time)
    pisa/             PISA's impact index (pisa)
"""
# Over 300 lines: every exit-2 input check of the CLI in one place, each a few lines, and the verbs' small steps.
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ifsr.models import OPENSEARCH, SPARSE_ENCODER, resolve_model_path, saved_layout

INDEX_FILE = "index.json"
JSONL_FORMAT = 'one JSON object a line: {"text": str, "_id": str (optional), "title": str (optional)}'


class InputError(ValueError):
    """A bad command-line input; the message names the flag, the file and what was expected."""


# ----------------------------------------------------------------------------- checks

def check_file(path: str | os.PathLike, flag: str, expected: str) -> Path:
    """An existing regular file, else InputError (missing, or a directory)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p} is a directory; expected {expected}")
    if not p.is_file():
        raise InputError(f"{flag} {p}: no such file; expected {expected}")
    return p


def check_writable_dir(path: str | os.PathLike, flag: str, empty: bool = False) -> Path:
    """A directory to write into (created now); InputError if it or a parent is a file, if it is not
    writable, or (`empty`) if it already holds files."""
    p = Path(path)
    for q in [p, *p.parents]:
        if q.exists() and not q.is_dir():
            what = "is a regular file" if q == p else f"lies under {q}, a regular file"
            raise InputError(f"{flag} {p} {what}; expected a directory (or a path to create one)")
    if empty and p.is_dir() and any(p.iterdir()):
        raise InputError(f"{flag} {p} is not empty; expected a new or empty directory"
                         + (" (pass --force to replace it)" if flag == "--out" else ""))
    p.mkdir(parents=True, exist_ok=True)
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {p}: not writable; expected a directory you can write to")
    return p


def check_out_file(path: str | os.PathLike, flag: str, new: bool = False) -> Path:
    """A file path to write (its folder created now); InputError if it is a directory or under a file,
    or (`new`) if it already exists."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p} is a directory; expected a file path")
    if new and p.exists():
        raise InputError(f"{flag} {p} already exists; expected a new file (pass --force to replace it)")
    check_writable_dir(p.parent, f"{flag}'s folder")
    return p


# ----------------------------------------------------------------------------- outputs: written aside, then renamed

def _aside(out: Path, what: str) -> Path:
    out = Path(os.path.abspath(out))
    return out.with_name(f".{out.name}.{os.getpid()}.{what}")


def publish_file(tmp: Path, out: Path, flag: str, force: bool) -> None:
    """Move the finished file `tmp` to `out`: replacing it with `force`, else only if `out` does not exist
    (a hard link cannot overwrite, so of two runs writing one file, the second is refused, not last-wins)."""
    if force:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise InputError(f"{flag} {out} was written by another run meanwhile; nothing written "
                         f"(pass --force to replace it)") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_dir(out: Path, flag: str, force: bool, write) -> Any:
    """Call write(tmp) on a new folder beside `out`, then rename it to `out` (absent or empty: `check_writable_dir`
    made it). A reader never sees half a folder; of two runs into one `out`, the second to finish is refused
    (`out` is no longer empty) unless `force`, which replaces it. The aside folder is removed on any failure."""
    out = Path(out)
    tmp = _aside(out, "tmp")
    tmp.mkdir()
    try:
        result = write(tmp)
        try:
            os.rename(tmp, out)  # replaces an empty folder, refuses a non-empty one
        except OSError as e:
            if not (force and out.is_dir()):
                raise InputError(f"{flag} {out} is no longer empty (another run wrote it meanwhile); nothing "
                                 f"written (pass --force to replace it)") from e
            old = _aside(out, "old")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def model_path(model: str) -> Path:
    """A model's folder: as given, or an offline name's wheel folder (`ifsr.models.resolve_model_path`)."""
    return Path(resolve_model_path(model))


def mlm_config(model: str) -> tuple[Path, dict[str, Any]] | None:
    """(config.json path, its content) of a local model's masked LM, None for a hub name."""
    p = model_path(model)
    found = [p / "config.json"] if (p / "config.json").is_file() else sorted(p.glob("document_*_Transformer/config.json"))
    if not found:
        return None
    try:
        return found[0], json.loads(found[0].read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"--model {model}: {found[0]} is not valid JSON ({e.msg}); expected a model config") from None


def check_max_length(model: str, max_length: int | None) -> None:
    """--max-length must be positive and within the model's position embeddings."""
    if max_length is None:
        return
    if max_length <= 0:
        raise InputError(f"--max-length {max_length}: expected a positive number of tokens")
    found = mlm_config(model)
    positions = found[1].get("max_position_embeddings") if found else None
    if isinstance(positions, int) and max_length > positions:
        raise InputError(f"--max-length {max_length} exceeds the {positions} positions of {model} "
                         f"(max_position_embeddings in {found[0]}); expected at most {positions}")


def cache_dir_of(cache_dir: str | None, no_cache: bool) -> Path | None:
    """The encoding cache of evaluate, export and index: --cache-dir, else `resolve_cache_dir` ($IFSR_CACHE_DIR,
    else .cache/ifsr), made now and checked writable; None with --no-cache (refused together with --cache-dir)."""
    if no_cache:
        if cache_dir is not None:
            raise InputError(f"--no-cache with --cache-dir {cache_dir}: expected one of the two")
        return None
    from ifsr.data.beir import resolve_cache_dir

    return check_writable_dir(resolve_cache_dir(cache_dir), "--cache-dir")


def check_model_idf(model: str, idf: str | None, command: str) -> None:
    """A saved model carries its IDF: refuse --idf with one; a bare MLM needs --idf (an existing file)."""
    layout = saved_layout(model)
    if layout and idf is not None:
        raise InputError(f"--idf {idf}: {model} is a saved {layout} model that carries its own IDF; drop --idf "
                         f"(to use another IDF table, pass the bare masked-LM with --idf)")
    if not layout:
        if idf is None:
            raise InputError(f"--model {model} is not a saved ifsr model (no modules.json or idf.json); "
                             f"expected a saved model directory, or pass --idf idf.json to pair the MLM with an IDF table")
        check_file(idf, "--idf", "an idf.json file (a JSON object of token -> idf)")


def idf_record(model: str, idf: str | None) -> dict[str, str]:
    """Which IDF a run used: the file (the --idf table, an OpenSearch model's idf.json, or the
    SparseEncoder's static-embedding weights file) and its sha256."""
    p = model_path(model)
    layout = saved_layout(model)
    if layout == SPARSE_ENCODER:
        files = sorted(p.glob("query_*_SparseStaticEmbedding/model.safetensors"))
        source = files[0] if files else p / "modules.json"
    else:
        source = p / "idf.json" if layout == OPENSEARCH else Path(idf)
    from ifsr.manifest import sha256_file

    return {"idf_file": str(source), "idf_sha256": sha256_file(source)}


# ----------------------------------------------------------------------------- corpora

def read_texts(corpus: str | os.PathLike, limit: int | None = None) -> tuple[list[str], list[str]]:
    """(doc ids, texts) of a BEIR directory (corpus.jsonl, title + " " + text) or a JSONL file with a
    "text" field (optional "title" joined the same way, optional "_id", else the line number)."""
    from ifsr.data.beir import join_text, read_corpus
    from ifsr.jsonl import bad_line, read_jsonl, string_field

    p = Path(corpus)
    if limit is not None and limit <= 0:
        raise InputError(f"--limit {limit}: expected a positive number of documents")
    if p.is_dir():
        path = check_file(p / "corpus.jsonl", "--corpus", "a BEIR directory holding corpus.jsonl")
        docs = read_corpus(path)
        ids = list(docs)[:limit]
        texts = [join_text(docs[i]["title"], docs[i]["text"]) for i in ids]
    else:
        path = check_file(p, "--corpus", "a BEIR directory or a JSONL file with a \"text\" field")
        ids, texts, first = [], [], {}  # first: doc id -> its line
        for n, obj in read_jsonl(path, JSONL_FORMAT):
            if limit is not None and len(ids) >= limit:
                break
            doc_id = string_field(obj, "_id", path, n, JSONL_FORMAT, default=str(n), allow_int=True)
            if doc_id in first:  # the rule of a BEIR directory's corpus.jsonl (ifsr.data.beir.read_corpus)
                raise bad_line(path, n, f"duplicate _id {doc_id!r} (line {first[doc_id]} has it)",
                               f"each document's _id once; {JSONL_FORMAT}")
            first[doc_id] = n
            ids.append(doc_id)
            texts.append(join_text(string_field(obj, "title", path, n, JSONL_FORMAT, default=""),
                                   string_field(obj, "text", path, n, JSONL_FORMAT)))
    if not texts:
        raise InputError(f"--corpus {p}: no documents in {path}; expected {JSONL_FORMAT}")
    return ids, texts


# ----------------------------------------------------------------------------- idf, train

def compute_idf(corpus: str, tokenizer: str, out: Path, limit: int | None = None,
                show_progress: bool = True, force: bool = False) -> dict[str, Any]:
    """The paper's IDF of every vocabulary token over `corpus`, written to `out` as idf.json (unseen: 1.0):
    under a temporary name, then moved there (`publish_file`: an existing `out` is replaced only with `force`)."""
    _, texts = read_texts(corpus, limit)  # a bad line is reported before torch is even imported
    from ifsr.core.encoder import load_tokenizer
    from ifsr.core.idf import document_frequencies, idf_from_df, save_idf

    tok = load_tokenizer(tokenizer)
    df, n = document_frequencies(texts, tok, show_progress=show_progress)
    idf = idf_from_df(df, n)
    tmp = _aside(out, "tmp")
    try:
        save_idf(tmp, idf, tok)
        publish_file(tmp, Path(out), "--out", force)
    finally:
        tmp.unlink(missing_ok=True)
    return {"n_docs": n, "vocab": len(idf), "seen": int((df > 0).sum())}


def train_from_config(config: str, **overrides: Any):
    """`ifsr.exp.runs.trained_run` on the AblationConfig file: pre-training (if configured), then
    fine-tuning on `train_dataset`'s train split with `train`'s settings; cached by run key, resumable.
    Launched by torchrun, it joins the process group after the checks (ifsr.distributed.init_from_env)."""
    from ifsr.exp.config import AblationConfig, load_config

    cfg = load_config(AblationConfig, check_file(config, "--config", "a YAML file of AblationConfig keys"), **overrides)
    check_writable_dir(cfg.runs_dir, "runs_dir")
    check_writable_dir(cfg.cache_dir, "cache_dir")
    if cfg.idf_path is not None:
        check_file(cfg.idf_path, f"{config}: idf_path", "an idf.json file (a JSON object of token -> idf)")
    from ifsr.exp.trainsets import finetune_dataset
    from ifsr.distributed import init_from_env
    from ifsr.exp.runs import trained_run

    init_from_env()  # under `torchrun --nproc_per_node N -m ifsr.cli train`: teacher scoring sharded, then DDP
    return trained_run(cfg, cfg.finetune_train(), lambda: finetune_dataset(cfg))


# ----------------------------------------------------------------------------- export, index, search

def export_index_name(corpus: str | None, index_name: str | None) -> str | None:
    """The bulk file's OpenSearch index name (--index-name, else the corpus's name lowercased), InputError if
    OpenSearch would refuse it; None without --corpus."""
    from ifsr.serving.opensearch import check_index_name

    name = index_name or (Path(corpus).stem.lower() if corpus is not None else None)
    if name is None:
        return None
    try:
        return check_index_name(name, "--index-name" if index_name else
                                f"the index name from --corpus {corpus} (set another with --index-name):")
    except ValueError as e:
        raise InputError(str(e)) from None


def encode_documents(doc, model: str, texts: list[str], cache_dir: Path | None, batch_size: int,
                     show_progress: bool):
    """CSR [n, V] of `texts`: the content-keyed encoding `ifsr evaluate`, `export --corpus` and `index` share
    (`ifsr.eval.evaluate.encode_texts`: one cache entry per model weights, texts and max length)."""
    from ifsr.eval.evaluate import encode_texts, model_weights

    return encode_texts(doc, texts, model_weights(model, doc), cache_dir, batch_size, show_progress)


def export_model(model: str, fmt: str, out: Path, idf: str | None = None, max_length: int | None = None,
                 corpus: str | None = None, limit: int | None = None, index_name: str | None = None,
                 batch_size: int = 32, show_progress: bool = True, force: bool = False,
                 cache_dir: Path | None = None) -> dict[str, Path]:
    """Write `model` in `fmt` ("opensearch" | "sentence-transformers") to `out`; with `corpus`, also its
    OpenSearch bulk file (mapping.json + bulk.ndjson) under out/bulk, from the shared encoding
    (`encode_documents`, cached in `cache_dir`). Written aside, then renamed (`write_dir`)."""
    from ifsr.serving import opensearch

    if corpus is not None and not opensearch.is_available():
        raise InputError(f"--corpus needs {opensearch.OPENSEARCH_PACKAGE}: pip install {opensearch.OPENSEARCH_PACKAGE}")
    name = export_index_name(corpus, index_name)
    ids, texts = read_texts(corpus, limit) if corpus is not None else ([], [])
    from ifsr.serving.base import vocab_terms
    from ifsr.serving.export import load_model, save_opensearch, save_sparse_encoder

    doc, query = load_model(model, idf_path=idf, max_length=max_length)
    vectors = encode_documents(doc, model, texts, cache_dir, batch_size, show_progress) if corpus is not None else None

    def write(tmp: Path) -> dict[str, Path]:
        written = {"model": (save_opensearch if fmt == "opensearch" else save_sparse_encoder)(doc, query, tmp)}
        if vectors is not None:
            written.update(opensearch.export_opensearch(ids, vectors, vocab_terms(doc.tokenizer), tmp / "bulk", name,
                                                        texts=texts, show_progress=show_progress))
        return {what: Path(out) / Path(path).relative_to(tmp) for what, path in written.items()}

    return write_dir(out, "--out", force, write)


def check_engine(name: str) -> None:
    from ifsr.serving.engines import ENGINES

    cls = ENGINES[name]
    if not cls.is_available():
        raise InputError(f"--engine {name} needs {cls.package}: pip install {cls.package} (or use --engine exact)")


def default_engine() -> str:
    from ifsr.serving.engines import ENGINES

    return "pisa" if ENGINES["pisa"].is_available() else "exact"


def build_index(model: str, corpus: str, engine: str, out: Path, idf: str | None = None,
                max_length: int | None = None, limit: int | None = None, batch_size: int = 32,
                show_progress: bool = True, force: bool = False, cache_dir: Path | None = None) -> dict[str, Any]:
    """Encode `corpus` with `model`'s document side (`encode_documents`, cached in `cache_dir`) and write an
    index folder for `search` (module doc)."""
    import scipy.sparse as sp

    from ifsr.core.idf import save_idf
    from ifsr.serving.base import vocab_terms
    from ifsr.serving.export import load_model
    from ifsr.serving.pisa import PisaImpactIndex

    ids, texts = read_texts(corpus, limit)
    doc, query = load_model(model, idf_path=idf, max_length=max_length)
    vectors = encode_documents(doc, model, texts, cache_dir, batch_size, show_progress)  # CSR [n, V]
    meta = {"engine": engine, "model": model, "corpus": str(corpus), "n_docs": len(ids), "max_length": doc.max_length,
            "doc_nnz": float(vectors.getnnz() / max(len(ids), 1))}

    def write(tmp: Path) -> None:
        query.tokenizer.save_pretrained(tmp / "query")
        save_idf(tmp / "query" / "idf.json", query.idf, query.tokenizer)
        if engine == "pisa":
            PisaImpactIndex.build(tmp / "pisa", vectors, vocab_terms(query.tokenizer), show_progress=show_progress)
        else:
            sp.save_npz(tmp / "docs.npz", sp.csr_matrix(vectors))
        (tmp / "doc_ids.json").write_text(json.dumps(ids), encoding="utf-8")
        (tmp / INDEX_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    write_dir(out, "--out", force, write)  # written aside, then renamed: never half an index, never two runs' mix
    return meta


def read_index(index: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    p = Path(index)
    meta_path = check_file(p / INDEX_FILE, "--index", f"a folder written by `ifsr index` (holding {INDEX_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"--index {p}: {meta_path} is not valid JSON ({e.msg}); rebuild it with `ifsr index`") from None
    from ifsr.serving.engines import ENGINES

    if not isinstance(meta, dict) or meta.get("engine") not in ENGINES:
        raise InputError(f"--index {p}: {meta_path} names no known engine; expected one of {sorted(ENGINES)}")
    check_engine(meta["engine"])
    return p, meta


def search_index(index: str | os.PathLike, text: str, k: int = 10) -> tuple[list[tuple[str, float]], bool]:
    """Top-k (doc id, score) of one query on an index folder: IDF query side, the folder's engine; and whether
    that engine is approximate (`EngineBase.approximate`). Scores are on the float vectors' scale for every
    engine: PISA's integer impacts are divided back by its quantization scale (`PisaImpactIndex.score_scale`)."""
    p, meta = read_index(index)
    if k <= 0:
        raise InputError(f"-k {k}: expected a positive number of hits")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # bytes of another encoding on the command line (decoded as surrogates)
        raise InputError(f"--query: not valid UTF-8 (byte {e.start} of the query); give the query in UTF-8") from None
    import scipy.sparse as sp

    from ifsr.core.encoder import QueryEncoder, load_tokenizer
    from ifsr.core.idf import load_idf
    from ifsr.serving.base import vocab_terms
    from ifsr.serving.engines import ENGINES
    from ifsr.serving.pisa import PisaImpactIndex

    tok = load_tokenizer(str(p / "query"))
    query = QueryEncoder(tok, load_idf(p / "query" / "idf.json", tok))
    ids_path = check_file(p / "doc_ids.json", "--index", "a folder written by `ifsr index` (holding doc_ids.json)")
    try:
        doc_ids = json.loads(ids_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"--index {p}: {ids_path} is not valid JSON ({e.msg}); rebuild it with `ifsr index`") from None
    if not isinstance(doc_ids, list) or len(doc_ids) != meta.get("n_docs"):
        raise InputError(f"--index {p}: {ids_path} holds {len(doc_ids) if isinstance(doc_ids, list) else 'no list of'} "
                         f"document ids for the index's {meta.get('n_docs')} documents; rebuild it with `ifsr index`")
    if meta["engine"] == "pisa":
        engine = PisaImpactIndex(p / "pisa", vocab_terms(tok), k=k)
    else:
        engine = ENGINES[meta["engine"]].from_docs(sp.load_npz(p / "docs.npz").tocsr(), k)
    ids = query.token_ids(text)
    rows, scores = engine.search_ids(ids, query.idf[ids])
    scale = getattr(engine, "score_scale", 1.0)
    return [(doc_ids[int(r)], float(s) / scale) for r, s in zip(rows, scores)], engine.approximate
