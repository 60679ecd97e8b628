"""Save and load an inference-free model in two layouts users already have tools for.

(a) A sentence-transformers `SparseEncoder` directory, written by the student builder
    (`ifsr.distill.student.save_student`, the same one training saves with):
      query route    = SparseStaticEmbedding(idf, frozen)               (no model at query time)
      document route = Transformer(fill-mask) + SpladePooling(max, relu)
    `SparseEncoder(path).encode_query / encode_document` then give ifsr's vectors.
(b) The OpenSearch layout: a Hugging Face masked-LM directory plus `idf.json` keyed by token string, and
    the document length in `sentence_bert_config.json` (`max_seq_length`, as sentence-transformers reads
    a model folder), so that a model trained at 64 tokens loads back at 64.

Neither layout has a notion of special tokens, so the exported document model carries ifsr's
"special tokens are zeroed" rule in its weights (`ifsr.distill.student.bake_special_zeroing`): their
MLM output bias is set to SPECIAL_BIAS, which no real logit can overcome, so ReLU sends them to
exactly 0. The query route gets idf 0 there.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling, Transformer

from ifsr.core.encoder import DocumentEncoder, QueryEncoder, load_tokenizer
from ifsr.core.idf import load_idf, save_idf
from ifsr.core.names import MAX_LENGTH
from ifsr.distill.student import bake_special_zeroing, save_student
from ifsr.models import OPENSEARCH, SPARSE_ENCODER, resolve_model_path, saved_layout

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
# The document side ifsr computes (DocumentEncoder): max over tokens of log1p(relu(MLM logits)).
POOLING = {"pooling_strategy": "max", "activation_function": "relu"}
LENGTH_FILE = "sentence_bert_config.json"  # an OpenSearch-layout folder's document length: {"max_seq_length": n}


@contextlib.contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """transformers' own bars (its "Loading weights" bar) off inside the block when `show` is False;
    the previous setting (transformers' and huggingface_hub's) is restored on leaving it."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    if show or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hub_was_off = hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
        if hub_was_off:
            hub_utils.disable_progress_bars()


@contextlib.contextmanager
def _loading(folder: str | os.PathLike) -> Iterator[None]:
    """Weights that pass `check_model_folder` but still fail to load: a ValueError naming the folder."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, EOFError, SafetensorError) as e:
        raise ValueError(f"{folder}: cannot load the model ({type(e).__name__}: {e}); expected a complete "
                         f"Hugging Face model folder (config.json, weights, tokenizer)") from e


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected {what}") from None


def check_safetensors(file: Path) -> None:
    """A .safetensors file must hold its whole header and all the tensor bytes the header describes."""
    size = file.stat().st_size
    expected = "a complete safetensors file (8-byte header length, JSON header, tensor data)"
    with open(file, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 0 or 8 + n > size:
            raise ValueError(f"{file}: truncated or not a safetensors file ({size} bytes, header cut off); "
                             f"expected {expected}")
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise ValueError(f"{file}: unreadable safetensors header; expected {expected}") from None
    if 8 + n + end > size:
        raise ValueError(f"{file}: truncated: {size} bytes, its header describes {8 + n + end}; expected {expected}")


def check_model_folder(folder: str | os.PathLike, what: str, config: bool = True) -> None:
    """Before loading: `folder` has config.json (if `config`), complete weights and a tokenizer,
    else a FileNotFoundError / ValueError naming what is missing or broken."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory (expected {what})")
    if config and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected {what})")
    found = [f for f in WEIGHT_FILES if (folder / f).is_file()]
    if not found:
        raise FileNotFoundError(f"{folder}: no model weights (expected one of {list(WEIGHT_FILES)}; {what})")
    for index in (f for f in found if f.endswith(".index.json")):
        weight_map = _read_json(folder / index, "a weight index with a weight_map").get("weight_map", {})
        absent = sorted({str(v) for v in weight_map.values()} - {p.name for p in folder.iterdir()})
        if absent:
            raise FileNotFoundError(f"{folder / index}: weight shards {absent} are missing from {folder}")
    for file in sorted(folder.glob("*.safetensors")):
        check_safetensors(file)
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{folder}: no tokenizer (expected tokenizer.json or a vocabulary file such as "
                                f"vocab.txt; {what})")


def check_sparse_encoder_dir(path: str | os.PathLike) -> None:
    """Before loading a SparseEncoder directory: a Router whose query route is one SparseStaticEmbedding
    and whose document route is Transformer(fill-mask) + SpladePooling(max, relu), every module folder
    complete. Anything else (another pooling or activation, more modules) is not what ifsr computes."""
    path = Path(path)
    layout = ("a SparseEncoder directory as save_sparse_encoder writes it: Router(query: SparseStaticEmbedding; "
              "document: Transformer(fill-mask) + SpladePooling(max, relu))")
    modules = _read_json(path / "modules.json", "a list of modules")
    if not (isinstance(modules, list) and len(modules) == 1 and isinstance(modules[0], dict)
            and str(modules[0].get("type", "")).endswith(".Router")):
        raise ValueError(f"{path / 'modules.json'}: not a single Router module; expected {layout}")
    root = path / str(modules[0].get("path", ""))
    config_file = root / "router_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: no router_config.json in {root} (the Router's routes); expected {layout}")
    config = _read_json(config_file, layout)
    try:
        structure, types = config["structure"], config["types"]
        query, document = list(structure["query"]), list(structure["document"])
        kinds = {name: str(types[name]).rsplit(".", 1)[-1] for name in query + document}
    except (KeyError, TypeError):
        raise ValueError(f"{config_file}: no 'types' and 'structure' for a query and a document route; "
                         f"expected {layout}") from None
    query_kinds, doc_kinds = [kinds[n] for n in query], [kinds[n] for n in document]
    got = f"query: {query_kinds}, document: {doc_kinds}"
    if query_kinds != ["SparseStaticEmbedding"] or doc_kinds not in (["Transformer", "SpladePooling"],
                                                                      ["MLMTransformer", "SpladePooling"]):
        raise ValueError(f"{config_file}: routes are {got}; ifsr computes only {layout}")
    static_dir, mlm_dir, pool_dir = root / query[0], root / document[0], root / document[1]
    check_model_folder(static_dir, "the query route's SparseStaticEmbedding (weights and tokenizer)", config=False)
    check_model_folder(mlm_dir, "the document route's masked-LM folder")
    st_config = mlm_dir / "sentence_bert_config.json"
    task = _read_json(st_config, "a Transformer config").get("transformer_task", "fill-mask") \
        if st_config.is_file() else "fill-mask"
    if task != "fill-mask":
        raise ValueError(f"{st_config}: transformer_task {task!r}; ifsr computes only {layout}")
    pool_file = pool_dir / "config.json"
    pooling = _read_json(pool_file, "a SpladePooling config") if pool_file.is_file() else {}
    saved = {k: pooling.get(k, v) for k, v in POOLING.items()}  # SpladePooling's defaults: max, relu
    if saved != POOLING:
        raise ValueError(f"{pool_file}: SpladePooling with pooling_strategy {saved['pooling_strategy']!r} and "
                         f"activation_function {saved['activation_function']!r}; ifsr computes only max pooling "
                         f"of log1p(relu(logits)) (pooling_strategy 'max', activation_function 'relu')")


def save_opensearch(doc: DocumentEncoder, query: QueryEncoder, path: str | os.PathLike) -> Path:
    """OpenSearch layout: HF model directory (special tokens baked off) + `idf.json`."""
    path = Path(path)
    mlm = copy.deepcopy(doc.mlm)
    bake_special_zeroing(mlm, doc.tokenizer)
    mlm.save_pretrained(path)
    doc.tokenizer.save_pretrained(path)
    save_idf(path / "idf.json", query.idf, query.tokenizer)
    (path / LENGTH_FILE).write_text(json.dumps({"max_seq_length": doc.max_length}) + "\n", encoding="utf-8")
    return path


def saved_length(path: Path) -> int:
    """An OpenSearch-layout folder's document length (LENGTH_FILE's max_seq_length), MAX_LENGTH if it has none."""
    if not (path / LENGTH_FILE).is_file():
        return MAX_LENGTH
    length = _read_json(path / LENGTH_FILE, 'a JSON object {"max_seq_length": n}')
    length = length.get("max_seq_length") if isinstance(length, dict) else None
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        raise ValueError(f"{path / LENGTH_FILE}: max_seq_length {length!r}; expected a positive number of tokens")
    return length


def load_opensearch(path: str | os.PathLike, max_length: int | None = None,
                    show_progress: bool = True) -> tuple[DocumentEncoder, QueryEncoder]:
    """An OpenSearch-layout folder; `max_length` None: the length saved with it (`saved_length`)."""
    path = Path(path)
    if not (path / "idf.json").is_file():
        raise FileNotFoundError(f"{path}: no idf.json (expected an OpenSearch-layout model directory)")
    check_model_folder(path, "an OpenSearch-layout model directory: a masked LM, its tokenizer and idf.json")
    max_length = saved_length(path) if max_length is None else max_length
    with _loading(path), progress_bars(show_progress):
        doc = DocumentEncoder.from_pretrained(str(path), max_length=max_length)
    return doc, QueryEncoder(doc.tokenizer, load_idf(path / "idf.json", doc.tokenizer))


def save_sparse_encoder(doc: DocumentEncoder, query: QueryEncoder, path: str | os.PathLike) -> Path:
    """Write a directory that `sentence_transformers.SparseEncoder(path)` loads as this model."""
    return save_student(doc.mlm, doc.tokenizer, query.idf, "idf", doc.max_length, path)


def load_sparse_encoder(path: str | os.PathLike, max_length: int | None = None,
                        show_progress: bool = True) -> tuple[DocumentEncoder, QueryEncoder]:
    """Read a SparseEncoder directory (`save_sparse_encoder`, or a trained student) into ifsr's classes;
    `max_length` None: the length saved with it. A layout ifsr does not compute (see
    `check_sparse_encoder_dir`) or an incomplete folder is an error naming the file."""
    check_sparse_encoder_dir(path)
    with _loading(path), progress_bars(show_progress):
        st = SparseEncoder(str(path), device="cpu")
    routes = st[0].sub_modules
    query_route = list(routes["query"]) if "query" in routes else []
    doc_route = list(routes["document"]) if "document" in routes else []
    if not (len(query_route) == 1 and isinstance(query_route[0], SparseStaticEmbedding)
            and len(doc_route) == 2 and isinstance(doc_route[0], Transformer)
            and isinstance(doc_route[1], SpladePooling)
            and doc_route[1].pooling_strategy == "max" and doc_route[1].activation_function == "relu"):
        raise ValueError(f"{path}: expected a Router with a SparseStaticEmbedding query route and a "
                         f"Transformer + SpladePooling(max, relu) document route")
    static, mlm = query_route[0], doc_route[0]
    length = mlm.max_seq_length if max_length is None else max_length
    doc = DocumentEncoder(mlm.auto_model, mlm.tokenizer, max_length=length)
    return doc, QueryEncoder(static.tokenizer, static.weight.detach().cpu().numpy().astype(np.float32))


def load_model(path_or_name: str, idf_path: str | os.PathLike | None = None, max_length: int | None = None,
               show_progress: bool = True):
    """Any saved layout or a model name: SparseEncoder dir, OpenSearch dir, or an MLM + `idf_path`.

    `max_length` None: the model's own, the one place that decides it for every `ifsr` verb: the length
    a saved model (either layout) was trained or exported with, MAX_LENGTH for a bare MLM or a folder that
    records none. `show_progress` False: no transformers "Loading weights" bar (the setting is restored after)."""
    p, layout = Path(path_or_name), saved_layout(path_or_name)
    if layout == SPARSE_ENCODER:
        return load_sparse_encoder(p, max_length, show_progress=show_progress)
    if layout == OPENSEARCH:
        return load_opensearch(p, max_length=max_length, show_progress=show_progress)
    max_length = MAX_LENGTH if max_length is None else max_length
    if idf_path is None:
        raise ValueError(f"{path_or_name}: not a saved ifsr model; pass idf_path to pair the MLM with an IDF table")
    local = resolve_model_path(path_or_name)
    if os.path.isdir(local):
        check_model_folder(local, "a masked-LM folder (with its tokenizer) to pair with an IDF table")
    with _loading(path_or_name), progress_bars(show_progress):
        doc = DocumentEncoder.from_pretrained(path_or_name, max_length=max_length)
    return doc, QueryEncoder(load_tokenizer(path_or_name), load_idf(idf_path, doc.tokenizer))
