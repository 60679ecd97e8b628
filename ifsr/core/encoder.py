"""The inference-free sparse retriever: a masked-LM document encoder and a model-free IDF query side.

Document side (SPLADE-max, single log; SPEC §1):
    w_j(d) = log(1 + ReLU( max_{i: mask_i = 1} logit_{i,j} ))      j over the vocabulary, special j zeroed
Query side (no model):
    q_j = 1[j in tokens(q), j not special] * idf_j
Score: s(q, d) = sum_j q_j * w_j(d).
"""
# Over 300 lines: the paper's two sides and the fused max head with its column and shard options: the core reads in one file.
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from ifsr.models import resolve_model_path

def checked_path(name_or_path: str) -> str:
    """`resolve_model_path`, and a path that looks local must be an existing directory."""
    path = resolve_model_path(name_or_path)
    looks_local = os.sep in path or path.startswith(".") or os.path.isabs(path)
    if looks_local and not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    return path


def special_ids(tokenizer) -> np.ndarray:
    """The tokenizer's special-token ids ([CLS], [SEP], [PAD], ...), distinct and ascending (int64)."""
    return np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block under `torch.manual_seed(seed)` and restore the global CPU RNG afterwards
    (a model loaded in it that gets a new head is initialised the same way every time)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_tokenizer(name_or_path: str):
    return AutoTokenizer.from_pretrained(checked_path(name_or_path))


def load_mlm(name_or_path: str, seed: int = 0) -> PreTrainedModel:
    """A masked-LM; a checkpoint without an MLM head (all-MiniLM-L6-v2) gets a new transform layer,
    seeded by `seed`, and a decoder tied to the word embeddings (BERT's `tie_word_embeddings`)."""
    path = checked_path(name_or_path)
    with seeded(seed):
        return AutoModelForMaskedLM.from_pretrained(path)


CPU_GRAD_COLUMNS = 256  # vocabulary columns per block of the training (gradient) path on CPU (at most `chunk`)


class _MaxPooledLogits(torch.autograd.Function):
    """max_i (h_i · W_j + b_j) over each document's real tokens, without the [B, L, V] logits.

    Forward, the vocabulary in blocks of `chunk` columns, each block one GEMM shape (the last one zero-padded), so
    a column subset gives the full head's values bit for bit; only the max (and, when a gradient is needed, its
    argmax token) is kept. Without a gradient (encoding) one document at a time over its real tokens: a block
    [n, chunk] stays in cache and padding costs nothing (at 512 tokens the whole-batch [B, L, chunk] block is
    memory-bound: 0.64x the per-document speed, benchmarks/eval_encode.py). With a gradient (training, short
    documents) the whole batch at once, padding excluded, which is faster there (benchmarks/train_step.py), on CPU
    in blocks of CPU_GRAD_COLUMNS columns (the same values: each logit is still one row of one product).
    Backward: the max routes d/dlogit_bj to one token, and only entries with a non-zero upstream gradient count
    (after ReLU: the few hundred active terms per document), so it is a scatter, not a matmul.
    """

    @staticmethod
    def forward(ctx, hidden, mask, weight, bias, chunk: int, need_index: bool):
        bsz, length, dim = hidden.shape  # hidden [B, L, H], mask [B, L] bool, weight [V, H], bias [V]
        vocab = weight.shape[0]
        # every block one shape, [B*L, H] @ [H, chunk] (the last one zero-padded): each logit then comes from the same
        # kernel whichever vocabulary ids are asked for, so a column subset gives the full head's values bit for bit
        w_t = weight.new_zeros((dim, -(-vocab // chunk) * chunk))  # [H, V rounded up to chunks]
        w_t[:, :vocab] = weight.t()
        values = hidden.new_full((bsz, vocab), float("-inf"))  # [B, V]
        if not need_index:
            for b in range(bsz):
                h = hidden[b, mask[b]]  # [n, H]: the real tokens (none: the row stays -inf, which ReLU sends to 0)
                if len(h):
                    for s in range(0, vocab, chunk):
                        width = min(chunk, vocab - s)
                        values[b, s : s + width] = (h @ w_t[:, s : s + chunk]).amax(dim=0)[:width]
            return values.add_(bias)  # [B, V]
        index = torch.zeros((bsz, vocab), dtype=torch.long, device=hidden.device)
        pad_rows = (~mask).reshape(-1).nonzero().squeeze(1)  # [P] padding positions of [B*L]: never win the max
        # on CPU narrower blocks: a [B, L, chunk] block of a training batch overflows the cache and the max over
        # it is memory-bound (benchmarks/train_step.py --docs 8: the head's forward at 64 x 128 tokens)
        cols = min(chunk, CPU_GRAD_COLUMNS) if hidden.device.type == "cpu" else chunk
        for s in range(0, vocab, cols):
            width = min(cols, vocab - s)
            block = hidden @ w_t[:, s : s + cols]  # [B, L, cols]
            block.view(bsz * length, -1).index_fill_(0, pad_rows, float("-inf"))  # (a document without tokens: -inf)
            v, i = block.max(dim=1)  # [B, cols]: the winning token's position
            index[:, s : s + width] = i[:, :width]
            values[:, s : s + width] = v[:, :width]
        values += bias
        ctx.save_for_backward(hidden, weight, index)
        ctx.bias_dtype = bias.dtype
        return values  # [B, V]

    @staticmethod
    def backward(ctx, grad):  # grad [B, V]
        hidden, weight, index = ctx.saved_tensors
        bsz, length, dim = hidden.shape
        flat = hidden.reshape(bsz * length, dim)  # [B*L, H]
        b, j = grad.nonzero(as_tuple=True)  # the entries whose gradient is not zero
        # sums in float32 (under bf16 autocast hidden is bf16 and weight float32), each gradient returned
        # in its input's dtype
        f32 = dict(dtype=torch.float32, device=grad.device)
        dh = torch.zeros(flat.shape, **f32) if ctx.needs_input_grad[0] else None  # [B*L, H]
        dw = torch.zeros(weight.shape, **f32) if ctx.needs_input_grad[2] else None  # [V, H]
        db = torch.zeros(weight.shape[0], **f32) if ctx.needs_input_grad[3] else None  # [V]
        step = 1 << 18  # bounded temporaries even for a dense upstream gradient
        for s in range(0, len(b), step):
            bb, jj = b[s : s + step], j[s : s + step]
            g = grad[bb, jj].float()  # [n]
            rows = bb * length + index[bb, jj]  # [n] the token that won each max
            if dh is not None:
                dh.index_add_(0, rows, g[:, None] * weight[jj].float())
            if dw is not None:
                dw.index_add_(0, jj, g[:, None] * flat[rows].float())
            if db is not None:
                db.index_add_(0, jj, g)
        return (None if dh is None else dh.to(hidden.dtype).view_as(hidden), None,
                None if dw is None else dw.to(weight.dtype), None if db is None else db.to(ctx.bias_dtype), None, None)


def max_pooled_logits(hidden: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      chunk: int = 1024) -> torch.Tensor:
    """[B, V] = max over real tokens i of (hidden_i @ weight.T + bias); hidden [B, L, H], mask [B, L].

    The same function (and gradient) as a dense output layer followed by a masked max, in
    O(B × V) memory instead of O(B × L × V); `benchmarks/encode.py` and `train_step.py` time it.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    need_index = torch.is_grad_enabled() and any(t.requires_grad for t in (hidden, weight, bias))
    return _MaxPooledLogits.apply(hidden, mask.bool(), weight, bias, chunk, need_index)


def mlm_max_logits(mlm: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   fused: bool = True, columns: torch.Tensor | None = None) -> torch.Tensor:
    """max over real tokens of the MLM logits, [B, V] (or [B, C]: only the vocabulary ids `columns`, whose
    decoder rows are gathered once, so the head costs C/V of its full work). BERT-family heads (transform +
    decoder) run fused through `max_pooled_logits`; any other head (or `fused=False`) computes the dense logits."""
    head = getattr(getattr(mlm, "cls", None), "predictions", None)
    if not fused or head is None or not hasattr(head, "transform"):
        logits = mlm(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, L, V]
        logits = logits.masked_fill(attention_mask[:, :, None] == 0, float("-inf"))  # padding never wins the max
        pooled = logits.amax(dim=1)  # [B, V]
        return pooled if columns is None else pooled[:, columns]
    hidden = mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, H]
    hidden = head.transform(hidden)  # [B, L, H]
    weight, bias = head.decoder.weight, head.decoder.bias  # [V, H], [V]
    if columns is not None:
        weight, bias = weight[columns], bias[columns]  # [C, H], [C]
    return max_pooled_logits(hidden, attention_mask, weight, bias)


class DocumentEncoder(nn.Module):
    """MLM logits -> masked max over tokens -> log1p(ReLU(.)) -> special tokens zeroed. Output [B, V].

    `max_length`: document tokens kept; `fused`: the max-pooled MLM head (`mlm_max_logits`), else the
    dense logits. Both are fixed at construction (`with_max_length` gives another length, same weights).
    """

    def __init__(self, mlm: PreTrainedModel, tokenizer, max_length: int = 256, fused: bool = True):
        super().__init__()
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.mlm, self.tokenizer = mlm, tokenizer
        self._max_length, self._fused = max_length, fused
        keep = torch.ones(mlm.config.vocab_size)  # [V]
        keep[torch.from_numpy(special_ids(tokenizer))] = 0.0
        self.register_buffer("keep", keep, persistent=False)
        self.train(mlm.training)  # follow the wrapped model (from_pretrained gives eval mode: no dropout)

    @classmethod
    def from_pretrained(cls, name_or_path: str, max_length: int = 256, seed: int = 0) -> DocumentEncoder:
        return cls(load_mlm(name_or_path, seed=seed), load_tokenizer(name_or_path), max_length)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def fused(self) -> bool:
        return self._fused

    def with_max_length(self, max_length: int) -> DocumentEncoder:
        """The same model (shared weights, same device) cutting documents at `max_length` tokens."""
        return DocumentEncoder(self.mlm, self.tokenizer, max_length, self.fused).to(self.device)

    @property
    def device(self) -> torch.device:
        return self.keep.device

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                columns: torch.Tensor | None = None) -> torch.Tensor:
        """Document weights [B, V]; with `columns` (vocabulary ids), only those weights, [B, C]."""
        pooled = mlm_max_logits(self.mlm, input_ids, attention_mask, self.fused, columns)  # [B, V] or [B, C]
        keep = self.keep if columns is None else self.keep[columns]
        # max first: log1p∘ReLU is monotone, so this is the same function as activating every token
        return torch.log1p(torch.relu(pooled.float())) * keep  # [B, V] or [B, C]

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = True, autocast_bf16: bool = False,
        shard: tuple[int, int] = (0, 1), columns: np.ndarray | None = None,
    ) -> sp.csr_matrix:
        """Encode a corpus into a CSR matrix [n, V] (float32), in input order.

        columns: vocabulary ids; only those weights are computed (only their decoder rows enter the head) and the
        other columns of the matrix stay empty. Exact for those ids: a score against a query whose tokens
        are all among them, its ranking, nDCG and the FLOPS metric are those of the full matrix, at a
        fraction of the head's work (`query_columns`; evaluation only, never an index or an export).

        Texts are tokenized once, sorted by length (longest first, stable) so batches carry little
        padding; each batch is turned sparse before the next, so memory stays O(batch_size × V).
        shard (rank, world): encode only batches rank, rank + world, ... of that sorted plan and leave
        the other rows empty; the world shards sum to the one-process matrix exactly (every batch is the
        same computation wherever it runs; ifsr.distributed.sharded_cached_encode).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rank, world = shard
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        was_training = self.training
        self.eval()
        ids = self._token_ids(texts)
        order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first
        vocab = self.mlm.config.vocab_size
        cols = None if columns is None else _check_columns(columns, vocab)
        cols_t = None if cols is None else torch.from_numpy(cols).to(self.device)
        blocks = []
        use_bf16 = autocast_bf16 and self.device.type == "cuda"
        for start in tqdm(range(0, len(ids), batch_size), desc="encode docs", disable=not show_progress):
            rows = order[start : start + batch_size]
            if (start // batch_size) % world != rank:  # another rank's batch: empty rows here
                blocks.append(sp.csr_matrix((len(rows), vocab), dtype=np.float32))
                continue
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                w = self(batch["input_ids"], batch["attention_mask"], cols_t)  # [b, V] or [b, C]
            blocks.append(_to_csr(w.float().cpu().numpy(), cols, vocab))
        self.train(was_training)
        if not blocks:
            return sp.csr_matrix((0, vocab), dtype=np.float32)
        stacked = sp.vstack(blocks, format="csr")  # rows in sorted order
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return stacked[inverse].astype(np.float32)

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The texts' token ids at max_length, remembered for the last TOKENIZED_KEEP (tokenizer, length, texts):
        the evaluation encodes one corpus with every student, and they share a tokenizer (same ids)."""
        fast = getattr(self.tokenizer, "backend_tokenizer", None)
        if fast is None:
            return self.tokenizer(list(texts), truncation=True, max_length=self.max_length, verbose=False)["input_ids"]
        from ifsr.cache import texts_sha256

        key = (_tokenizer_fingerprint(fast), self.max_length, texts_sha256(texts))
        if key not in _TOKENIZED:
            _TOKENIZED[key] = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                                             verbose=False)["input_ids"]
            while len(_TOKENIZED) > TOKENIZED_KEEP:
                _TOKENIZED.pop(next(iter(_TOKENIZED)))
        return _TOKENIZED[key]

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Hugging Face layout (config, weights, tokenizer): loadable by `from_pretrained(path)`."""
        self.mlm.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


TOKENIZED_KEEP = 4  # corpora whose token ids DocumentEncoder.encode remembers (the eval sets of a preset)
_TOKENIZED: dict[tuple[str, int, str], list[list[int]]] = {}  # insertion order: the oldest goes first


def _tokenizer_fingerprint(fast) -> str:
    """sha256 of a fast tokenizer's whole definition (vocabulary, normalizer; truncation settings excluded: the
    length is part of the key). Computed per call (a few ms), never stored on the tokenizer object."""
    import hashlib

    return hashlib.sha256(fast.to_str().encode()).hexdigest()


def _check_columns(columns: np.ndarray, vocab: int) -> np.ndarray:
    """Distinct vocabulary ids, ascending (int64); ValueError if empty or out of [0, vocab)."""
    cols = np.unique(np.asarray(columns, dtype=np.int64))
    if cols.size == 0 or cols[0] < 0 or cols[-1] >= vocab:
        raise ValueError(f"columns must be a non-empty set of vocabulary ids in [0, {vocab}), got {cols.size} ids "
                         f"{'' if cols.size == 0 else f'in [{cols[0]}, {cols[-1]}]'}")
    return cols


def _to_csr(w: np.ndarray, cols: np.ndarray | None, vocab: int) -> sp.csr_matrix:
    """[b, V] dense weights, or [b, C] weights of the ascending ids `cols`, as a CSR [b, V] of the non-zeros."""
    if cols is None:
        return sp.csr_matrix(w)
    rows, at = np.nonzero(w)  # row-major: each row's ids ascending
    return sp.csr_matrix((w[rows, at], (rows, cols[at])), shape=(w.shape[0], vocab))


def query_columns(queries: sp.spmatrix) -> np.ndarray:
    """The vocabulary ids used by any query of a query matrix [nq, V] (ascending): the only document
    columns that nDCG, recall and the FLOPS metric of those queries read (`DocumentEncoder.encode(columns=)`)."""
    return np.unique(sp.csr_matrix(queries).indices).astype(np.int64)


class QueryEncoder:
    """Inference-free query side: tokenize, keep each distinct non-special token once, weight by IDF."""

    def __init__(self, tokenizer, idf: np.ndarray):
        idf = np.asarray(idf, dtype=np.float32)
        if idf.shape != (len(tokenizer),):
            raise ValueError(f"idf must have shape ({len(tokenizer)},), got {idf.shape}")
        self.tokenizer, self.idf = tokenizer, idf
        self.special = special_ids(tokenizer)

    @property
    def vocab_size(self) -> int:
        return len(self.idf)

    def token_ids(self, text: str) -> np.ndarray:
        """Distinct non-special token ids of `text`, ascending (binary presence: no term frequency)."""
        ids = np.unique(np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64))
        return np.setdiff1d(ids, self.special, assume_unique=True)

    def encode(self, texts: Sequence[str], binary: bool = False) -> sp.csr_matrix:
        """CSR [n, V]: idf on each distinct token (or 1.0 with `binary=True`: the plain-FLOPS arm)."""
        indptr, indices = [0], []
        for text in texts:
            ids = self.token_ids(text)
            indices.append(ids)
            indptr.append(indptr[-1] + len(ids))
        cols = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
        data = np.ones(len(cols), dtype=np.float32) if binary else self.idf[cols]
        return sp.csr_matrix((data, cols, np.asarray(indptr)), shape=(len(texts), self.vocab_size))
