"""One loader for every config: layers, unknown keys refused (nested ones too), the arms' names."""
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ifsr.exp.config import (ARMS, AblationConfig, BaselinesConfig, LatencyConfig, TrainConfig,
                             arm_views, load_config, parse_list, preset_config, save_config)

ROOT = Path(__file__).resolve().parents[2]


def test_every_preset_yaml_loads():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if path.name != "presets.yaml":
            cfg = load_config(AblationConfig, path)
            assert cfg.preset == path.stem and set(cfg.arms) <= set(ARMS)


def test_train_overrides_merge_over_the_yaml_train():
    cpu = ROOT / "configs" / "cpu.yaml"
    cfg = load_config(AblationConfig, cpu, train={"in_batch_negatives": True}, lambdas=[0.0, 0.005], arms=None)
    assert cfg.train.in_batch_negatives is True and cfg.lambdas == [0.0, 0.005] and cfg.arms == list(ARMS)
    yaml_train = yaml.safe_load(cpu.read_text())["train"]
    assert cfg.train.steps == yaml_train["steps"] and cfg.train.student_temperature == "auto"  # the rest kept
    with pytest.raises(ValueError, match="headline_lambda 0.005 is not one of lambdas"):  # named before any run
        load_config(AblationConfig, cpu, lambdas=[0.0])
    with pytest.raises(ValueError, match="seeds must be"):
        load_config(AblationConfig, cpu, seeds=[0, 0])
    assert load_config(AblationConfig, cpu).train.in_batch_negatives is False
    with pytest.raises(ValueError, match="arms must be"):
        load_config(AblationConfig, cpu, arms=["idf"])  # the old name of the arm
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['in_batch'\]"):
        load_config(AblationConfig, cpu, train={"in_batch": True})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lamdas'\]"):
        load_config(AblationConfig, cpu, lamdas=[0.1])


def test_unknown_keys_in_a_file_and_round_trip(tmp_path):
    path = save_config(TrainConfig(lam=0.5), tmp_path / "c.yaml")
    assert load_config(TrainConfig, path) == TrainConfig(lam=0.5)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"train": {"stpes": 3}}))
    with pytest.raises(ValueError, match=r"bad.yaml.train: unknown key\(s\) \['stpes'\]"):
        load_config(AblationConfig, tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="query_weights"):
        TrainConfig(query_weights="tf")


def test_arms_vocabulary_and_views():
    assert ARMS == {"idf-flops": "idf", "flops": "ones"}
    assert arm_views("idf-flops") == [("idf-flops", "idf")]
    assert arm_views("flops") == [("flops", "ones"), ("flops+idf-query", "idf")]
    presets = yaml.safe_load((ROOT / "configs" / "presets.yaml").read_text())
    for notebooks in presets.values():
        for params in notebooks.values():
            assert set((params or {}).get("arms", [])) <= set(ARMS)



def test_reading_a_config_does_not_import_torch():
    code = ("import sys; from ifsr.exp.config import AblationConfig, load_config; "
            f"load_config(AblationConfig, {str(ROOT / 'configs' / 'cpu.yaml')!r}); "
            "from ifsr.exp.config import read_config; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_baselines_presets_and_lists():
    assert parse_list('["scifact", "cranfield"]') == ["scifact", "cranfield"] == parse_list("scifact, cranfield")
    assert preset_config("smoke").corpus_limit == 300
    assert preset_config("smoke", corpus_limit=50, datasets='["cranfield"]').datasets == ["cranfield"]
    assert isinstance(preset_config("cpu"), BaselinesConfig)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")
    with pytest.raises(ValueError, match="unknown key"):
        preset_config("cpu", top_k=10)


def test_latency_config_is_measure_latencys_keywords():
    cfg = load_config(LatencyConfig, preset="cpu", sizes=["scifact", 1000], model_from=None)
    assert cfg.measure_kwargs() == {"sizes": ["scifact", 1000], "n_queries": 100, "engines": ["pisa"],
                                    "model": "splade-tiny", "cache_dir": ".cache/ifsr", "data_dir": None,
                                    "max_passages": None, "resample_from": "real", "seed": 0, "repeats": 1,
                                    "max_length": 256, "max_docs": {}}
    from ifsr.exp.levers import lever_kwargs, lever_table  # the levers are timed on the latency table's own corpus
    levers = lever_kwargs(load_config(LatencyConfig, levers=["none", "doc-top-k=64"], lever_engine="bmp"))
    assert [l.kind for l in levers["levers"]] == ["none", "doc-top-k"] and levers["engine"] == "bmp"
    assert set(levers) <= set(inspect.signature(lever_table).parameters)
    assert (levers["resample_from"], levers["max_passages"]) == ("real", None)
    with pytest.raises(ValueError, match="lever"):
        lever_kwargs(load_config(LatencyConfig, levers=["doc-top-k=0"]))
    with pytest.raises(ValueError, match="unknown key"):
        load_config(LatencyConfig, n_query=3)


def test_train_config_defaults_are_unchanged():
    """The defaults key cached runs (ifsr.exp.runs.run_key hashes the TrainConfig): validation must not move them."""
    assert dataclasses.asdict(TrainConfig()) == {
        "student": "splade-tiny", "query_weights": "idf", "teacher": "ensemble-minmax",
        "teacher_names": ["dense", "sparse"], "teacher_weights": None, "teacher_scale": 30.0,
        "lam": 0.002, "lambda_warmup_steps": 200, "flops_form": "batch", "rank_loss": "kl", "student_temperature": 1.0,
        "in_batch_negatives": False, "steps": 2000, "batch_size": 8, "grad_accum": 1, "n_neg": 2, "lr": 2e-5,
        "weight_decay": 0.01, "warmup_steps": 200, "max_length": 256, "seed": 0, "bf16": False, "use_cpu": True,
        "save_steps": 500, "logging_steps": 10}
    ok = TrainConfig(lam=0, teacher_scale=30, weight_decay=0, warmup_steps=0, lambda_warmup_steps=0, max_length=512,
                     student_temperature="auto", rank_loss="margin_mse", use_cpu=False, bf16=True)
    assert ok.lam == 0 and isinstance(ok.lam, int)  # an int is a number; kept as given (its YAML spelling keys the run)


@pytest.mark.parametrize("field, value, expected", [
    ("steps", "four", "an integer >= 1"), ("steps", 2.5, "an integer >= 1"), ("steps", 0, "an integer >= 1"),
    ("steps", True, "an integer >= 1"), ("batch_size", 0, "an integer >= 1"), ("batch_size", -3, "an integer >= 1"),
    ("grad_accum", 0, "an integer >= 1"), ("n_neg", 0, "an integer >= 1"), ("save_steps", 0, "an integer >= 1"),
    ("logging_steps", 0, "an integer >= 1"), ("warmup_steps", -1, "an integer >= 0"),
    ("lambda_warmup_steps", -1, "an integer >= 0"), ("lambda_warmup_steps", 1.5, "an integer >= 0"),
    ("max_length", 0, "from 1 to 512"), ("max_length", 100000, "512 position embeddings"),
    ("seed", -1, "an integer from 0"), ("use_cpu", "no", "true or false"), ("use_cpu", 1, "true or false"),
    ("bf16", "yes", "true or false"), ("in_batch_negatives", None, "true or false"),
    ("lam", -0.5, "a finite number >= 0"), ("lam", float("nan"), "a finite number >= 0"), ("lam", "0.1", "number"),
    ("lr", "fast", "a finite number > 0"), ("lr", 0, "a finite number > 0"), ("lr", "2e-5", "decimal point"),
    ("lr", float("inf"), "finite"), ("teacher_scale", 0.0, "> 0"), ("weight_decay", -0.01, ">= 0"),
    ("student_temperature", -1.0, "> 0 or 'auto'"), ("student_temperature", "hot", "> 0 or 'auto'"),
    ("rank_loss", "x", "['kl', 'margin_mse']"), ("flops_form", "sum", "['batch', 'per_slot']"),
    ("teacher", 3, "one of"), ("query_weights", "tf", "one of"), ("student", "", "non-empty string"),
])
def test_train_config_refuses_bad_values(field, value, expected):
    """Issue 31: "four", 2.5, 0 and the like went on to a traceback (or trained: use_cpu "no" read as true,
    lam -0.5 rewarding density). Each is a ValueError naming the field, the value and what is expected."""
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    message = str(err.value)
    assert message.startswith(f"{field} must be") and expected in message and f"got {value!r}" in message


def test_a_bad_train_value_in_a_file_is_refused_by_the_loader(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  use_cpu: \"no\"\n")
    with pytest.raises(ValueError, match="use_cpu must be true or false"):
        load_config(AblationConfig, tmp_path / "bad.yaml")
    cfg = load_config(AblationConfig, ROOT / "configs" / "cpu.yaml")
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        dataclasses.replace(cfg.train, steps=0)  # what the notebooks' per-arm configs go through


def test_teacher_seeds_default_to_seeds_and_are_checked():
    """The teacher ablation's own seeds (issue 27: more seeds where they buy power): null is `seeds`; a bad list is
    refused; the device plan counts one stage-1 run per (teacher, teacher seed)."""
    import dataclasses

    from ifsr.exp.config import AblationConfig

    cfg = AblationConfig(seeds=[0, 1, 2])
    assert cfg.ablation_seeds() == [0, 1, 2]
    assert dataclasses.replace(cfg, teacher_seeds=[0, 1, 2, 3, 4, 5]).ablation_seeds() == [0, 1, 2, 3, 4, 5]
    for bad in ([], [1, 1], [0, "1"], [True], 3):
        with pytest.raises(ValueError, match="teacher_seeds must be null or a non-empty list of distinct integers"):
            AblationConfig(seeds=[0], teacher_seeds=bad)


def test_finetune_n_neg_is_stage_2s_alone():
    """`finetune_n_neg` (issue 27: more teacher signal a stage-2 step) changes stage 2's TrainConfig only; null is
    train.n_neg; a bad value is refused naming the field and mining_depth."""
    import dataclasses

    from ifsr.exp.ablations import sweep_train_config
    from ifsr.exp.config import AblationConfig
    from ifsr.exp.runs import pretrain_config, start_config

    cfg = AblationConfig(seeds=[0], lambdas=[0.01], pretrain_pairs=4, pretrain_steps=2)
    assert cfg.finetune_train() is cfg.train and cfg.train.n_neg == 2
    seven = dataclasses.replace(cfg, finetune_n_neg=7)
    assert seven.finetune_train().n_neg == 7 and seven.train.n_neg == 2
    tc = sweep_train_config(seven, "idf-flops", 0.01, 0)
    assert tc.n_neg == 7 and tc.lam == 0.01
    assert start_config(seven, tc).n_neg == 2 == pretrain_config(seven, "ensemble-minmax", 0).n_neg
    for bad in (0, 51, 2.0, True, "7"):
        with pytest.raises(ValueError, match=r"finetune_n_neg must be null or an integer from 1 to mining_depth \(50\)"):
            AblationConfig(finetune_n_neg=bad)
