"""Training: the loss module computes the paper's objective, lambda follows its warm-up and is logged,
the config rejects bad options, and a run killed and resumed ends with exactly the weights of one that
was not (CPU, same seed)."""

import dataclasses
import json

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder.modules import SpladePooling
from transformers import TrainerCallback, TrainerControl, TrainerState

from ifsr.core.encoder import load_tokenizer
from ifsr.core.idf import load_idf
from ifsr.core.objective import inference_free_loss, teacher_targets
from ifsr.distill.student import build_student
from ifsr.distill.trainer import (TEMPERATURE_GRID, InferenceFreeDistillLoss, LambdaWarmup, calibrate_temperature,
                                  candidate_scores, train, with_row_index)
from ifsr.exp.config import TrainConfig, load_config, save_config

WORDS = "cell protein gene lung cancer brain virus heat flow plate wing boundary layer pressure".split()


def _dataset(n=8, g=3, seed=0):
    rng = np.random.default_rng(seed)
    text = lambda k: " ".join(rng.choice(WORDS, k))  # noqa: E731
    cols = {"query": [text(3) for _ in range(n)]}
    for j in range(g):
        cols[f"doc_{j}"] = [text(12) for _ in range(n)]
    cols["label"] = [rng.random((2, g)).astype(np.float32).tolist() for _ in range(n)]
    return datasets.Dataset.from_dict(cols)


@pytest.fixture(scope="module")
def idf(splade_tiny_path, idf_file):
    return load_idf(idf_file, load_tokenizer("splade-tiny"))


def test_config_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="query_weights"):
        TrainConfig(query_weights="tf")
    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(teacher="cross-encoder")
    path = save_config(TrainConfig(lam=0.5), tmp_path / "c.yaml")
    assert load_config(TrainConfig, path).lam == 0.5
    path.write_text(path.read_text() + "lamda: 0.1\n")
    with pytest.raises(ValueError, match="unknown key.*lamda"):
        load_config(TrainConfig, path)


def test_loss_module_is_the_paper_objective(idf):
    cfg = TrainConfig(lam=0.3, lambda_warmup_steps=10, max_length=32, teacher="ensemble-minmax")
    model = build_student("splade-tiny", idf, "idf", cfg.max_length, seed=0)
    loss = InferenceFreeDistillLoss(model, cfg)
    loss.set_step(5)  # lambda_t = 0.3 * (5/10)^2
    assert loss.lam == pytest.approx(0.075)
    ds = _dataset(n=2)
    queries, docs = list(ds["query"]), [list(ds[f"doc_{g}"]) for g in range(3)]
    labels = torch.tensor(list(ds["label"]))  # [2, 2, 3]
    feats = [model.preprocess(queries, task="query")] + [model.preprocess(d, task="document") for d in docs]
    with torch.no_grad():
        out = loss(feats, labels)
        q = model.encode_query(queries, convert_to_tensor=True).to_dense()
        d = torch.stack([model.encode_document(x, convert_to_tensor=True).to_dense() for x in docs], dim=1)
        want = inference_free_loss(q, d, teacher_targets(labels, "ensemble-minmax"), 0.3 * 0.25)
    assert set(out) == {"rank", "flops_penalty"}
    assert out["rank"].item() == pytest.approx(want["rank"].item(), rel=1e-4)
    assert out["flops_penalty"].item() == pytest.approx(0.075 * want["flops"].item(), rel=1e-4)


def test_lambda_warmup_callback_sets_the_step_and_logs_lambda(idf):
    cfg = TrainConfig(lam=0.4, lambda_warmup_steps=4)
    loss = InferenceFreeDistillLoss(build_student("splade-tiny", idf, "idf", 16, seed=0), cfg)
    callback, state, control = LambdaWarmup(loss), TrainerState(), TrainerControl()
    assert loss.lam == 0.0  # step 0
    state.global_step = 2
    callback.on_step_begin(None, state, control)
    assert loss.lam == pytest.approx(0.4 * (2 / 4) ** 2)
    state.global_step = 3  # the step ran; the trainer appends its row to the history, then calls on_log
    logs = {"loss": 1.0, "rank": 0.9}
    state.log_history.append({**logs, "step": 3})
    callback.on_log(None, state, control, logs=logs)
    assert state.log_history[-1]["lambda"] == logs["lambda"] == pytest.approx(0.1)  # the lambda step 2 used
    summary = {"train_runtime": 1.0}
    callback.on_log(None, state, control, logs=summary)
    assert "lambda" not in summary


RESUME_CFG = dict(steps=4, batch_size=2, max_length=32, save_steps=2, logging_steps=1, warmup_steps=1,
                  lambda_warmup_steps=2, lam=0.05, lr=1e-3)


@pytest.fixture(scope="module")
def straight(idf, tmp_path_factory):
    """The run of RESUME_CFG on _dataset() that nothing interrupted: its output folder."""
    out = tmp_path_factory.mktemp("straight")
    train(TrainConfig(**RESUME_CFG), _dataset(), idf, out)
    return out


def _weights(model_dir):
    files = sorted(model_dir.rglob("model.safetensors"))
    assert files
    return {k: v for f in files for k, v in load_file(f).items()}


def _same_weights(a_dir, b_dir):
    a, b = _weights(a_dir), _weights(b_dir)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_is_exact(idf, straight, tmp_path):
    cfg = TrainConfig(**RESUME_CFG)
    ds = _dataset()
    straight = straight / "model"

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("killed after the step-2 checkpoint")

    with pytest.raises(KeyboardInterrupt):
        train(cfg, ds, idf, tmp_path / "resumed", callbacks=[Crash()])
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = train(cfg, ds, idf, tmp_path / "resumed", resume=True)
    assert _same_weights(straight, resumed)
    a = _weights(straight)
    start = _weights(build_student_dir(idf, tmp_path))
    assert any(not torch.equal(a[k], start[k]) for k in a if k in start)  # training did move the weights
    saved = SparseEncoder(str(straight), device="cpu")  # the standard modules, not the fused training one
    kinds = [type(m).__name__ for route in saved[0].sub_modules.values() for m in route]
    assert kinds == ["SparseStaticEmbedding", "Transformer", "SpladePooling"] and isinstance(saved[0].sub_modules["document"][1], SpladePooling)
    rows = [json.loads(line) for line in (straight.parent / "log.jsonl").read_text().splitlines()]
    lams = [r["lambda"] for r in rows if "loss" in r]  # logging_steps 1: the lambda of steps 0..3, T = 2
    assert lams == pytest.approx([0.0, 0.05 * 0.25, 0.05, 0.05])


@pytest.mark.slow
def test_a_save_killed_midway_is_never_resumed_from_nor_taken_as_done(idf, straight, tmp_path, monkeypatch, caplog):
    """Issue 31: a kill while a checkpoint was being written left checkpoint-N/ without trainer_state.json,
    and every later run stopped on `[Errno 2] ... checkpoint-N/trainer_state.json`. Now the incomplete
    checkpoint is deleted (with a warning) and the run resumes from the last complete one, to the very
    weights of an uninterrupted run. A kill during the final model save leaves no model/ (ifsr.exp.runs
    takes model/modules.json as a finished run), and the next run saves it from the last checkpoint."""
    from transformers import TrainerState

    import ifsr.distill.trainer as trainer_module

    cfg, ds, out = TrainConfig(**RESUME_CFG), _dataset(), tmp_path / "run"
    checkpoints = out / "checkpoints"
    save_state = TrainerState.save_to_json

    def killed_at_step_4(self, json_path):  # the model, optimizer and RNG state of checkpoint-4 are written
        if self.global_step == 4:
            raise KeyboardInterrupt("killed while checkpoint-4 was being saved")
        save_state(self, json_path)

    with monkeypatch.context() as m:
        m.setattr(TrainerState, "save_to_json", killed_at_step_4)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, ds, idf, out)
    assert (checkpoints / "checkpoint-2" / "trainer_state.json").is_file()
    assert (checkpoints / "checkpoint-4").is_dir() and not (checkpoints / "checkpoint-4" / "trainer_state.json").exists()
    assert not (out / "model").exists()

    real_save = trainer_module.save_student

    def killed_after_writing(*args):  # the whole model is written, the kill comes before train() returns
        real_save(*args)
        raise KeyboardInterrupt("killed while the model was being saved")

    with monkeypatch.context() as m, caplog.at_level("WARNING", logger="ifsr.distill.trainer"):
        m.setattr(trainer_module, "save_student", killed_after_writing)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, ds, idf, out)  # resumes from checkpoint-2 (before: FileNotFoundError on checkpoint-4)
    assert any("incomplete checkpoint" in r.getMessage() and "checkpoint-4" in r.getMessage() for r in caplog.records)
    assert (checkpoints / "checkpoint-4" / "trainer_state.json").is_file()  # written again, whole
    assert not (out / "model").exists()  # no half model that a later run would take as trained
    assert not list(out.glob(".model.tmp-*"))

    model_dir = train(cfg, ds, idf, out)  # resumes from checkpoint-4 (no step left) and saves
    assert model_dir == out / "model" and (model_dir / "modules.json").is_file()
    assert _same_weights(straight / "model", model_dir)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]


def test_incomplete_checkpoints_are_skipped(tmp_path):
    """Only a checkpoint with its trainer state, model and optimizer files counts; the latest such one wins."""
    from ifsr.distill.trainer import last_complete_checkpoint, resume_checkpoint

    def checkpoint(step, state=True, weights=True, truncated=False):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "modules.json").write_text("[]")
        for name in ("optimizer.pt", "scheduler.pt"):
            (d / name).write_bytes(b"x")
        if weights:
            (d / "document").mkdir()
            (d / "document" / "model.safetensors").write_bytes(b"x")
        if state:
            (d / "trainer_state.json").write_text('{"global_step": 1' if truncated else json.dumps({"global_step": step}))
        return d

    assert last_complete_checkpoint(tmp_path / "none") == (None, [])
    c2, c10 = checkpoint(2), checkpoint(10)
    bad = [checkpoint(12, state=False), checkpoint(14, weights=False), checkpoint(16, truncated=True)]
    (tmp_path / "checkpoint-20").write_text("a file")
    assert last_complete_checkpoint(tmp_path) == (c10, bad)
    assert resume_checkpoint(tmp_path) == c10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-2", "checkpoint-20"]
    for d in (c2, c10):
        (d / "trainer_state.json").unlink()
    assert resume_checkpoint(tmp_path) is None and not c2.exists() and not c10.exists()


def test_too_little_data_for_one_optimizer_step_is_refused(tmp_path):
    """Issue 31: batch_size above the number of training queries gave 0 optimizer steps, and the untrained
    start was saved as the trained model. Now refused with the counts, before the output folder exists."""
    small = _dataset(n=3)
    with pytest.raises(ValueError, match=r"3 training examples .*batch_size 4 x grad_accum 1"):
        train(TrainConfig(batch_size=4), small, None, tmp_path / "run")
    with pytest.raises(ValueError, match=r"batch_size 2 x grad_accum 2"):  # one batch, two needed for a step
        train(TrainConfig(batch_size=2, grad_accum=2), small, None, tmp_path / "run")
    parts = datasets.DatasetDict({"big": _dataset(n=40), "tiny": _dataset(n=2)})  # round-robin: the smallest sets it
    with pytest.raises(ValueError, match=r"42 training examples \(big: 40, tiny: 2;"):
        train(TrainConfig(batch_size=4), parts, None, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    from ifsr.distill.trainer import optimizer_steps_per_epoch

    assert optimizer_steps_per_epoch(small, TrainConfig(batch_size=3)) == 1
    assert optimizer_steps_per_epoch(_dataset(n=9), TrainConfig(batch_size=2, grad_accum=2)) == 2
    assert optimizer_steps_per_epoch(parts, TrainConfig(batch_size=2)) == 2
    assert optimizer_steps_per_epoch(_dataset(n=16), TrainConfig(batch_size=2), world=2) == 4


def build_student_dir(idf, tmp_path):
    model = build_student("splade-tiny", idf, "idf", 32, seed=0, fused=False)
    model.save(str(tmp_path / "start"))
    return tmp_path / "start"


class _BowBank:
    """A bank over the toy dataset: bag-of-WORDS teacher vectors (dense and 'sparse' the same)."""

    def __init__(self, ds, g):
        vec = lambda t: np.array([t.split().count(w) for w in WORDS], np.float32)  # noqa: E731
        self.q = np.stack([vec(t) for t in ds["query"]])  # [n, W]
        self.d = np.stack([vec(ds[f"doc_{j}"][i]) for i in range(len(ds)) for j in range(g)])  # [n*G, W]
        self.g = g

    def scores(self, rows, candidate_rows=None):
        cand = rows if candidate_rows is None else candidate_rows
        cols = (cand[:, None] * self.g + np.arange(self.g)).reshape(-1)
        s = self.q[rows] @ self.d[cols].T  # [b, b*G]
        return np.stack([s, 2 * s], axis=1).astype(np.float32)  # [b, 2, b*G]


def test_in_batch_loss_scores_every_batch_document(idf):
    """With in-batch negatives each query's candidates are all B*G batch documents, the targets the
    bank's teacher scores over that set; checked against the objective written out by hand, and
    against the own-candidate loss for a batch of one query."""
    ds = _dataset(n=3, g=2, seed=1)
    bank = _BowBank(ds, 2)
    cfg = TrainConfig(lam=0.1, lambda_warmup_steps=0, max_length=32, in_batch_negatives=True, teacher_scale=2.0,
                      student_temperature=20.0)  # soft on both sides: the KL is far from 0
    model = build_student("splade-tiny", idf, "idf", cfg.max_length, seed=0)
    loss = InferenceFreeDistillLoss(model, cfg, bank)
    indexed = with_row_index(ds).select([2, 0])  # a batch of rows 2 and 0
    queries, docs = list(indexed["query"]), [list(indexed[f"doc_{g}"]) for g in range(2)]
    labels = torch.tensor(list(indexed["label"]))  # [2, 3, 2]
    assert labels[:, 2, 0].tolist() == [2.0, 0.0]
    model.eval()

    def feats(n):  # fresh features per call: the modules write into them
        return [model.preprocess(queries[:n], task="query")] + [model.preprocess(d[:n], task="document") for d in docs]

    with torch.no_grad():
        out = loss(feats(2), labels)
        q = model.encode_query(queries, convert_to_tensor=True).to_dense()  # [2, V]
        d = torch.stack([model.encode_document(x, convert_to_tensor=True).to_dense() for x in docs], dim=1)  # [2, 2, V]
        d_all = d.reshape(4, -1)  # batch documents, example-major
        s = q @ d_all.T / 20.0  # [2, 4]
        t = torch.from_numpy(bank.scores(np.array([2, 0])))  # [2, 2, 4]
        norm = lambda x: (x - x.min(1, keepdim=True).values) / (x.max(1, keepdim=True).values - x.min(1, keepdim=True).values + 1e-6)  # noqa: E731
        target = 2.0 * (norm(t[:, 0]) + norm(t[:, 1])) / 2
        p_t = torch.softmax(target, 1)
        kl = (p_t * (p_t.log() - torch.log_softmax(s, 1))).sum(1).mean()
        fl = d_all.mean(0).pow(2).sum()
    assert kl.item() > 1e-3 and out["rank"].item() == pytest.approx(kl.item(), rel=1e-4)
    assert out["flops_penalty"].item() == pytest.approx(0.1 * fl.item(), rel=1e-4)
    plain_labels = torch.from_numpy(bank.scores(np.array([2])))  # [1, 2, 2]: one query, its own candidates
    with torch.no_grad():
        a = loss(feats(1), labels[:1])
        b = InferenceFreeDistillLoss(model, dataclasses.replace(cfg, in_batch_negatives=False))(feats(1), plain_labels)
    assert a["rank"].item() > 1e-4 and a["rank"].item() == pytest.approx(b["rank"].item(), rel=1e-5)


def test_in_batch_options_are_checked(idf):
    with pytest.raises(ValueError, match="rank_loss 'kl'"):
        TrainConfig(in_batch_negatives=True, rank_loss="margin_mse")
    model = build_student("splade-tiny", idf, "idf", 32, seed=0)
    with pytest.raises(ValueError, match="TeacherBank"):
        InferenceFreeDistillLoss(model, TrainConfig(in_batch_negatives=True))
    parts = datasets.DatasetDict({"b": _dataset(n=2, seed=2), "a": _dataset(n=3, seed=3)})
    rows = with_row_index(parts)
    assert [lab[2][0] for lab in rows["a"]["label"]] == [0.0, 1.0, 2.0]  # sorted sources, global numbering
    assert [lab[2][0] for lab in rows["b"]["label"]] == [3.0, 4.0]


@pytest.mark.slow
def test_in_batch_training_runs(idf, tmp_path):
    """The trainer carries the row-numbered labels through its collator to the in-batch loss."""
    ds = _dataset(n=6, g=3, seed=4)
    cfg = TrainConfig(steps=2, batch_size=3, max_length=32, save_steps=10, logging_steps=1, warmup_steps=0, lr=1e-3,
                      in_batch_negatives=True)
    out = train(cfg, ds, idf, tmp_path / "run", bank=_BowBank(ds, 3))
    assert (out / "modules.json").is_file()
    logged = [r for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines()) if "rank" in r]
    assert logged and all(np.isfinite(r["rank"]) for r in logged) and all("lambda" in r for r in logged)


def test_a_third_teacher_is_a_config_entry(idf):
    """label [B, K, G] with K = len(teacher_names): the loss module reads K rows and weights them as configured."""
    cfg = TrainConfig(lam=0.0, max_length=32, teacher="ensemble-minmax", teacher_names=["dense", "sparse", "third"],
                      teacher_weights=[1.0, 1.0, 2.0])
    model = build_student("splade-tiny", idf, "idf", cfg.max_length, seed=0)
    loss = InferenceFreeDistillLoss(model, cfg)
    ds = _dataset(n=2)
    queries, docs = list(ds["query"]), [list(ds[f"doc_{g}"]) for g in range(3)]
    two = torch.tensor(list(ds["label"]))  # [2, 2, 3]
    labels = torch.cat([two, two[:, :1].flip(-1)], dim=1)  # [2, 3, 3]: a third teacher
    feats = [model.preprocess(queries, task="query")] + [model.preprocess(d, task="document") for d in docs]
    with torch.no_grad():
        out = loss(feats, labels)
        q = model.encode_query(queries, convert_to_tensor=True).to_dense()
        d = torch.stack([model.encode_document(x, convert_to_tensor=True).to_dense() for x in docs], dim=1)
        target = teacher_targets(labels, "ensemble-minmax", names=cfg.teacher_names, weights=cfg.teacher_weights)
        want = inference_free_loss(q, d, target, 0.0)
        other = inference_free_loss(q, d, teacher_targets(two, "ensemble-minmax"), 0.0)
    assert out["rank"].item() == pytest.approx(want["rank"].item(), rel=1e-4)
    assert out["rank"].item() != pytest.approx(other["rank"].item(), rel=1e-4)  # the third teacher counts
    with pytest.raises(ValueError, match="teacher_weights"):
        TrainConfig(teacher_names=["dense", "sparse", "third"], teacher_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="teacher must be one of"):
        TrainConfig(teacher_names=["dense", "third"], teacher="sparse")


def test_temperature_calibration_scores_are_those_of_full_vectors(idf):
    """The calibration's scores (documents on the queries' vocabulary only) are the full vectors' dot products,
    and its temperature the grid point a full-vector scoring picks (the second formulation, written out here)."""
    model = build_student("splade-tiny", idf, "idf", 32, seed=0)
    model.eval()
    cfg = TrainConfig(student="splade-tiny", n_neg=2, max_length=32, teacher="ensemble-minmax")
    rows = _dataset(n=24, g=3, seed=3)
    with torch.no_grad():
        q = model.encode_query(list(rows["query"]), convert_to_tensor=True).to_dense()  # [n, V]
        full = torch.stack([(q * model.encode_document(list(rows[f"doc_{g}"]), convert_to_tensor=True).to_dense()).sum(1)
                            for g in range(3)], dim=1)  # [n, G]
    got = candidate_scores(model, rows, 3)
    assert torch.allclose(got, full, rtol=1e-5, atol=1e-4) and full.std() > 1.0
    target = teacher_targets(torch.tensor(rows["label"])[:, :2], "ensemble-minmax", scale=cfg.teacher_scale,
                             names=cfg.teacher_names)
    losses = [inference_free_loss(torch.ones(1, 1), full[:, :, None], target, 0.0, temperature=t)["rank"].item()
              for t in TEMPERATURE_GRID]
    assert calibrate_temperature(model, rows, cfg) == TEMPERATURE_GRID[int(np.argmin(losses))]
