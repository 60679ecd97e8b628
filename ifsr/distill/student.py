"""The student as a sentence-transformers SparseEncoder: one builder for training, for saving, for export.

    SparseEncoder(Router(query:    SparseStaticEmbedding(idf or ones, frozen; 0 on special tokens),
                         document: MLM + SPLADE max pooling, log1p(ReLU(.))))

Training (`build_student(fused=True)`) runs the document route as one `FusedSpladeDocument`; special
tokens stay live there, as in the reference trainer (their query weight is 0, but they count in
FLOPS; SPEC §1). Saving (`save_student`, used by `ifsr.distill.trainer.train` and by
`ifsr.serving.export.save_sparse_encoder`) writes the standard Transformer(fill-mask) +
SpladePooling(max, relu) pair, which has no notion of special tokens, so the special tokens' MLM
output bias is baked to SPECIAL_BIAS (ReLU then gives exactly 0): `SparseEncoder(path)` gives ifsr's
`DocumentEncoder` vectors. The trained biases of those tokens are kept beside the weights
(TRAINING_BIAS_FILE) and `build_student` puts them back, so a later stage trains on from the
weights as trained, not from the baked ones.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer
from transformers import PreTrainedModel

from ifsr.core.encoder import checked_path, mlm_max_logits, seeded, special_ids

SPECIAL_BIAS = -1.0e4  # no real logit overcomes it: ReLU sends the special tokens to exactly 0
TRAINING_BIAS_FILE = "ifsr_special_bias.json"  # {"token_ids": [...], "bias": [...]}: their bias before baking


def mlm_dir(name_or_path: str) -> str:
    """The masked-LM folder of a model: itself, or a SparseEncoder directory's document Transformer folder."""
    path = checked_path(name_or_path)
    if not (Path(path) / "modules.json").is_file():
        return path
    modules = json.loads((Path(path) / "modules.json").read_text())
    if any(m["type"].endswith(".Transformer") and not m.get("path") for m in modules):
        return path  # a sentence-transformers model whose Transformer is the folder itself (all-MiniLM-L6-v2)
    found = sorted(Path(path).glob("*/tokenizer.json")) + sorted(Path(path).glob("*/*/tokenizer.json"))
    if not found:
        raise FileNotFoundError(f"{path}: no tokenizer.json in the SparseEncoder's module folders")
    return str(found[0].parent)


class FusedSpladeDocument(Transformer):
    """Transformer(fill-mask) + SpladePooling(max, relu) as one module, the max fused into the MLM head
    (`ifsr.core.encoder.mlm_max_logits`): the same vectors and gradients without the [B, L, V] logits
    (benchmarks/train_step.py). Only the training student uses it; `save_student` writes the standard pair."""

    def forward(self, features: dict, **kwargs) -> dict:
        pooled = mlm_max_logits(self.auto_model, features["input_ids"], features["attention_mask"])  # [B, V]
        features["sentence_embedding"] = torch.log1p(torch.relu(pooled))  # [B, V]
        return features

    def get_embedding_dimension(self) -> int:
        return self.auto_model.config.vocab_size


def query_weight_vector(idf, tokenizer, kind: str) -> torch.Tensor:
    """[V] query-side weights: idf (IDF-aware arm) or ones (plain arm); 0 on special tokens."""
    w = torch.as_tensor(idf, dtype=torch.float32).clone() if kind == "idf" else torch.ones(len(tokenizer))
    w[torch.from_numpy(special_ids(tokenizer))] = 0.0
    return w


def build_student(name_or_path: str, idf, query_weights: str, max_length: int, seed: int,
                  fused: bool = True) -> SparseEncoder:
    """The student from a model name, an MLM folder or a saved student directory.

    `query_weights`: "idf" (the IDF-aware arm: `idf` on the query route) or "ones" (the plain arm).
    `seed` initialises a new MLM head (all-MiniLM-L6-v2). `fused`: the document route is one
    `FusedSpladeDocument` (training); else the standard Transformer(fill-mask) + SpladePooling(max,
    relu) pair. Either way the MLM carries its trained special-token biases (TRAINING_BIAS_FILE).
    """
    path = mlm_dir(name_or_path)
    with seeded(seed):
        kind = FusedSpladeDocument if fused else Transformer
        doc_modules = [kind(path, transformer_task="fill-mask", max_seq_length=max_length, unpad_inputs=False)]
    if not fused:
        doc_modules.append(SpladePooling(pooling_strategy="max", activation_function="relu"))
    restore_training_bias(doc_modules[0].auto_model, path)
    tokenizer = doc_modules[0].tokenizer
    weight = query_weight_vector(idf, tokenizer, query_weights)  # [V]
    query = SparseStaticEmbedding(tokenizer=tokenizer, weight=weight, frozen=True)
    router = Router.for_query_document(query_modules=[query], document_modules=doc_modules)
    return SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu")


def document_mlm(model: SparseEncoder) -> Transformer:
    """The document route's Transformer module (fused or standard) of a `build_student` model."""
    return model[0].sub_modules["document"][0]


@torch.no_grad()
def document_columns(model: SparseEncoder, texts: list[str], columns: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """[n, C] the document route's weights log1p(ReLU(max-pooled MLM logits)) of `texts` on the vocabulary ids
    `columns` only (in input order, `batch_size` texts at a time): the columns of `model.encode_document`'s
    [n, V] vectors, with only those decoder rows in the head (`mlm_max_logits(columns=)`), so a score
    against queries whose tokens are all in `columns` costs C/V of the head's work. Special tokens stay live,
    as in the training route (`FusedSpladeDocument`); a query never weighs them."""
    doc = document_mlm(model)
    out = []
    for s in range(0, len(texts), batch_size):
        features = doc.tokenize(texts[s : s + batch_size])
        ids, mask = (features[k].to(model.device) for k in ("input_ids", "attention_mask"))
        pooled = mlm_max_logits(doc.auto_model, ids, mask, columns=columns.to(model.device))
        out.append(torch.log1p(torch.relu(pooled)))  # [b, C]
    return torch.cat(out) if out else torch.zeros((0, len(columns)))


def _output_bias(mlm: PreTrainedModel) -> torch.Tensor:
    head = mlm.get_output_embeddings()
    if getattr(head, "bias", None) is None:
        raise ValueError(f"{type(mlm).__name__}'s output layer has no bias to carry special-token zeroing")
    return head.bias


def bake_special_zeroing(mlm: PreTrainedModel, tokenizer) -> dict[str, list]:
    """Set the special tokens' MLM output bias to SPECIAL_BIAS, in place; returns what it replaced
    ({"token_ids", "bias"}, the TRAINING_BIAS_FILE content)."""
    bias, ids = _output_bias(mlm), special_ids(tokenizer)
    replaced = {"token_ids": ids.tolist(), "bias": bias.detach()[torch.from_numpy(ids)].tolist()}
    with torch.no_grad():
        bias[torch.from_numpy(ids)] = SPECIAL_BIAS
    return replaced


def restore_training_bias(mlm: PreTrainedModel, folder: str | os.PathLike) -> None:
    """Put back the special-token biases `bake_special_zeroing` replaced, if `folder` keeps them."""
    file = Path(folder) / TRAINING_BIAS_FILE
    if not file.is_file():
        return
    kept = json.loads(file.read_text(encoding="utf-8"))
    with torch.no_grad():
        _output_bias(mlm)[torch.tensor(kept["token_ids"])] = torch.tensor(kept["bias"], dtype=torch.float32)


def save_student(mlm: PreTrainedModel, tokenizer, idf, query_weights: str, max_length: int,
                 path: str | os.PathLike) -> Path:
    """Write the student of `mlm` as a standard SparseEncoder directory at `path` (loadable by
    `sentence_transformers.SparseEncoder(path)` without ifsr): `build_student(fused=False)` with the
    special tokens baked off, their trained biases kept in the document folder's TRAINING_BIAS_FILE."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        mlm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        model = build_student(tmp, idf, query_weights, max_length, seed=0, fused=False)
        document = document_mlm(model)
        kept = bake_special_zeroing(document.auto_model, document.tokenizer)
        model.save(str(path))
    (Path(mlm_dir(str(path))) / TRAINING_BIAS_FILE).write_text(json.dumps(kept), encoding="utf-8")
    return path
