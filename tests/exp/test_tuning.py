"""The dev-split step sweep (issue 27): refusals before any training, and the dev set it scores on."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ifsr.exp.config import AblationConfig, load_config
from ifsr.exp.tuning import dev_set, main, step_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_dev_set_is_the_held_out_training_queries(data_root):
    cfg = load_config(AblationConfig, ROOT / "configs" / "cpu.yaml", data_dir=str(data_root))
    dev = dev_set(cfg)
    assert dev.split == "dev" and len(dev.query_ids) == cfg.dev_queries == 200
    from ifsr.data.beir import dev_split, load_beir, training_queries  # what fine-tuning trains on leaves them out
    train, _ = dev_split(load_beir("scifact", split="train", data_dir=data_root), cfg.dev_queries, cfg.seed)
    assert not {q for q, _, _ in training_queries(train)} & set(dev.query_ids)


def test_refusals_before_any_training(data_root, tmp_path, capsys):
    smoke = load_config(AblationConfig, ROOT / "configs" / "smoke.yaml", data_dir=str(data_root), dev_queries=0,
                        runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="dev_queries is 0"):
        dev_set(smoke)
    with pytest.raises(ValueError, match="steps must be positive"):
        step_sweep(smoke, [0, 4])
    with pytest.raises(ValueError, match="stage-1 lambdas must be >= 0"):
        step_sweep(smoke, [2], teacher_lambdas=[0.001, -0.5])
    with pytest.raises(ValueError, match="stage-1 scales must be positive"):
        step_sweep(smoke, [2], pretrain=[(100, 150), (0, 10)])
    with pytest.raises(ValueError, match="training lengths must be positive integers"):
        step_sweep(smoke, [2], max_lengths=[128, 0])
    with pytest.raises(ValueError, match="headline_lambda"):
        step_sweep(dataclasses.replace(smoke, headline_lambda=None), [2])
    config = tmp_path / "no-dev.yaml"
    config.write_text((ROOT / "configs" / "smoke.yaml").read_text().replace("dev_queries: 3", "dev_queries: 0")
                      .replace("runs_dir: runs/smoke", f"runs_dir: {tmp_path / 'runs'}"))
    assert main([str(config), "--steps", "2", "--out", str(tmp_path / "out"), "--data-dir", str(data_root)]) == 2
    assert "dev_queries is 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
    assert main([str(config), "--steps", "2", "--pretrain", "100x150", "--out", str(tmp_path / "out")]) == 2
    assert "expected PAIRS:STEPS (e.g. 400:600), got '100x150'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()



def test_a_stage1_scale_brings_its_own_start(data_root, tmp_path, monkeypatch):
    """Each --pretrain point is its own stage-1 start (a run keyed anew) with the stage-2 runs on it, crossed with
    the other axes; the training and scoring are stubbed here (the protocol's runs are tested in test_runs)."""
    import ifsr.exp.tuning as tuning
    from ifsr.exp.runs import run_key, start_config

    smoke = load_config(AblationConfig, ROOT / "configs" / "smoke.yaml", data_dir=str(data_root),
                        runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    seen = []

    class Run:
        def __init__(self, c, key):
            seen.append((c.pretrain_pairs, c.pretrain_steps, c.teacher_lambda, key))
            self.model_dir = tmp_path / key / "model"

    monkeypatch.setattr(tuning, "dev_set", lambda c: None)
    monkeypatch.setattr(tuning, "dev_score", lambda c, model, dev: {"nDCG@10": 0.5, "per_query": np.full(4, 0.5)})
    monkeypatch.setattr(tuning, "pretrained_run", lambda c, start, pre: Run(c, "pre-" + str(start.steps)))
    monkeypatch.setattr(tuning, "trained_run", lambda c, cfg, data, pre: Run(c, f"ft-{cfg.steps}-{cfg.max_length}"))
    table = step_sweep(smoke, [1, 3], pretrain=[(12, 2), (20, 5)], teacher_lambdas=[0.0, 0.01])
    assert len(table) == 1 + 2 * 2 * (1 + 2)
    assert list(table["pretrain_steps"])[:4] == [0, 2, 2, 2] and list(table["pretrain_pairs"])[-1] == 20
    starts = [s[:3] for s in seen if s[3].startswith("pre-")]
    assert starts == [(12, 2, 0.0), (12, 2, 0.01), (20, 5, 0.0), (20, 5, 0.01)]
    # the start a scale brings is keyed by it: a changed pairs or steps is another stage-1 run
    base = tuning.sweep_train_config(smoke, "idf-flops", smoke.headline_lambda, 0)
    scaled = [dataclasses.replace(smoke, pretrain_pairs=p, pretrain_steps=n) for p, n in [(12, 2), (20, 2), (12, 5)]]
    keys = {run_key(c, start_config(c, base), "pretrain") for c in scaled}
    assert len(keys) == 3
    # a training length is another start too, and its stage-2 runs train at it
    seen.clear()
    table = step_sweep(smoke, [1], max_lengths=[16, 32])
    assert list(table["max_length"]) == [0, 16, 16, 32, 32]
    assert [s[3] for s in seen if s[3].startswith("ft-")] == ["ft-1-16", "ft-1-32"]
    lengths = [dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, max_length=m)) for m in (16, 32)]
    assert len({run_key(c, start_config(c, dataclasses.replace(base, max_length=c.train.max_length)), "pretrain")
                for c in lengths}) == 2
    # stage 2's negatives (--n-negs): one start for all of them, each point's stage-2 run with its own n_neg
    seen.clear()
    monkeypatch.setattr(tuning, "trained_run", lambda c, cfg, data, pre: Run(c, f"ft-{cfg.steps}-n{cfg.n_neg}"))
    table = step_sweep(smoke, [1, 3], n_negs=[2, 5])
    assert list(table["n_neg"]) == [0, smoke.train.n_neg, 2, 2, 5, 5]
    assert [s[3] for s in seen] == ["pre-2", "ft-1-n2", "ft-3-n2", "ft-1-n5", "ft-3-n5"]
    with pytest.raises(ValueError, match=r"stage-2 negatives must be integers from 1 to mining_depth \(20\)"):
        step_sweep(smoke, [1], n_negs=[2, 21])


def test_dev_resolution_says_what_dev_can_tell_apart():
    """Each trained point against its own stage-1 start, paired over the dev queries (hand-made: the point gains 0.5 on
    one query of four, so Δ 0.125 and a bootstrap se near sqrt(var/n) = 0.108), and the best point against the
    rest."""
    from ifsr.exp.tuning import dev_resolution

    start = np.array([0.0, 0.5, 1.0, 0.5])
    rows = [{"model": "untrained", "steps": 0, "nDCG@10": 0.4, "per_query": np.array([0.0, 0.5, 0.5, 0.6])},
            {"model": "stage-1 start", "steps": 0, "nDCG@10": start.mean(), "per_query": start},
            {"model": "m", "steps": 10, "nDCG@10": 0.625, "per_query": start + [0.5, 0, 0, 0]},
            {"model": "m", "steps": 20, "nDCG@10": 0.5, "per_query": start.copy()}]
    t = dev_resolution(rows)
    assert "per_query" not in t and t["Δ vs start"].isna().tolist() == [True, True, False, False]
    assert t.loc[2, "Δ vs start"] == 0.125 and abs(t.loc[2, "se"] - np.sqrt(0.046875 / 4)) < 0.01
    assert t.loc[2, "MDE"] == pytest.approx(2.8 * t.loc[2, "se"], rel=0.01)
    assert t.loc[3, "Δ vs start"] == 0.0 and t.loc[3, "se"] == 0.0
    assert np.isnan(t.loc[2, "best ahead by"]) and t.loc[3, "best ahead by"] == 0.125  # the best is the 10-step point
    assert t.loc[3, "its MDE"] == pytest.approx(t.loc[2, "MDE"], rel=0.05)
