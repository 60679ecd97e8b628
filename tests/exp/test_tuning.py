"""The dev-split step sweep (issue 27): refusals before any training, and the dev set it scores on."""
import dataclasses
from pathlib import Path

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
    with pytest.raises(ValueError, match="headline_lambda"):
        step_sweep(dataclasses.replace(smoke, headline_lambda=None), [2])
    config = tmp_path / "no-dev.yaml"
    config.write_text((ROOT / "configs" / "smoke.yaml").read_text().replace("dev_queries: 3", "dev_queries: 0")
                      .replace("runs_dir: runs/smoke", f"runs_dir: {tmp_path / 'runs'}"))
    assert main([str(config), "--steps", "2", "--out", str(tmp_path / "out"), "--data-dir", str(data_root)]) == 2
    assert "dev_queries is 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
