"""The batch runner checks parameters before running, refuses to overwrite, and the report reads tables."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ifsr.replicate import NOTEBOOKS, check_parameters, plan
from ifsr.report.compare import matched_flops_gaps
from ifsr.report.report import write_report

ROOT = Path(__file__).resolve().parents[1]


def test_every_preset_plans_with_declared_parameters():
    for preset in ("smoke", "cpu", "gpu"):
        steps = plan(preset, ROOT, data_dir="somewhere")
        assert [n.stem for n, _, _ in steps][:3] == ["00_baselines", "01_idf_flops", "02_teachers"]
        for notebook, out_dir, params in steps:
            assert params["preset"] == preset and params["data_dir"] == "somewhere"
            assert out_dir.parent == ROOT / "results" / preset
            assert out_dir.name.startswith(NOTEBOOKS[notebook.stem])


def test_entry_variants_name_their_folder():
    from ifsr.replicate import entry_parts

    assert entry_parts("03_latency") == ("03_latency", "latency")
    assert entry_parts("03_latency@student") == ("03_latency", "latency_student")
    for bad in ("04_nothing", "03_latency@Bad-Name"):
        with pytest.raises(ValueError, match="unknown notebook entry"):
            entry_parts(bad)


def test_unknown_parameter_and_preset_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lamdas'\]"):
        check_parameters(ROOT / "notebooks" / "01_idf_flops.ipynb", {"lamdas": [0.1]})
    with pytest.raises(ValueError, match="unknown preset 'tpu'"):
        plan("tpu", ROOT)
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (root / "configs").mkdir()
    (root / "configs" / "presets.yaml").write_text("smoke:\n  01_idf_flops: {lambda: 1}\n")
    with pytest.raises(ValueError, match="unknown parameter"):
        plan("smoke", root)
    (root / "configs" / "presets.yaml").write_text("smoke:\n  07_magic: {}\n")
    with pytest.raises(ValueError, match="unknown notebook"):
        plan("smoke", root)


def test_finished_result_is_not_overwritten(tmp_path, capsys):
    from ifsr.replicate import replicate

    root = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (root / "configs").mkdir()
    (root / "configs" / "presets.yaml").write_text("smoke:\n  02_teachers: {config_path: configs/smoke.yaml}\n")
    done = root / "results" / "smoke" / "teachers"
    done.mkdir(parents=True)
    (done / "manifest.json").write_text("{}")
    assert replicate("smoke", root) == []
    assert "use --force" in capsys.readouterr().out
    assert json.loads((root / "results" / "smoke" / "LAUNCH.json").read_text())["notebooks"]


def test_matched_flops_gaps_by_hand():
    curve = pd.DataFrame([
        {"dataset": "d", "arm": "flops", "lambda": 1.0, "flops": 1.0, "nDCG@10": 0.50},
        {"dataset": "d", "arm": "flops", "lambda": 0.1, "flops": 100.0, "nDCG@10": 0.70},
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.5, "flops": 10.0, "nDCG@10": 0.65},
        {"dataset": "d", "arm": "idf-flops", "lambda": 5.0, "flops": 0.1, "nDCG@10": 0.40},  # outside: no match
    ])
    gaps = matched_flops_gaps(curve, "d")
    assert len(gaps) == 1
    assert gaps[0]["flops"] == pytest.approx(0.60)  # the plain arm's nDCG, log-linear midpoint between 0.5 and 0.7
    assert gaps[0]["at_flops"] == 10.0  # at the IDF-aware point's FLOPS (an arm named "flops" must not shadow it)
    assert gaps[0]["gap"] == pytest.approx(0.05)


def test_report_states_verdicts_from_tables(tmp_path):
    root = tmp_path / "results"
    (root / "p" / "idf_flops").mkdir(parents=True)
    (root / "p" / "teachers").mkdir(parents=True)
    pd.DataFrame([
        {"dataset": "d", "arm": "flops", "lambda": 1.0, "flops": 1.0, "nDCG@10": 0.50},
        {"dataset": "d", "arm": "flops", "lambda": 0.1, "flops": 100.0, "nDCG@10": 0.70},
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.5, "flops": 10.0, "nDCG@10": 0.55, "p_value_vs_bm25": 0.2},
        {"dataset": "d", "arm": "untrained", "lambda": float("nan"), "flops": 20.0, "nDCG@10": 0.56},
    ]).to_csv(root / "p" / "idf_flops" / "curve.csv", index=False)
    (root / "p" / "baselines").mkdir(parents=True)
    pd.DataFrame([{"dataset": "d", "system": "bm25", "nDCG@10": 0.52},
                  {"dataset": "d", "system": "inference-free-untrained", "nDCG@10": 0.40}]).to_csv(
        root / "p" / "baselines" / "table.csv", index=False)
    pd.DataFrame([
        {"dataset": "d", "teacher": "dense", "nDCG@10": 0.61, "p_value_vs_ensemble_minmax": 0.01},
        {"dataset": "d", "teacher": "sparse", "nDCG@10": 0.58, "p_value_vs_ensemble_minmax": 0.001},
        {"dataset": "d", "teacher": "ensemble-minmax", "nDCG@10": 0.60, "p_value_vs_ensemble_minmax": 1.0},
        {"dataset": "d", "teacher": "ensemble-raw", "nDCG@10": 0.57, "p_value_vs_ensemble_minmax": 0.02},
    ]).to_csv(root / "p" / "teachers" / "table.csv", index=False)
    text = write_report(root, "p").read_text()
    assert "- λ=0.5, FLOPS 10: IDF-aware 0.5500 vs plain 0.6000" in text and "does not hold here (0/1" in text
    assert "Claim 2 does not hold here (ensemble not above the best single teacher, dense; p = 0.01, significant" in text
    assert "Claim 3 holds here (min-max 0.6000 vs raw sum 0.5700; p = 0.02, significant at 0.05)" in text
    assert ("best IDF-aware 0.5500 (λ=0.5) vs bm25 0.5200 → beats it (+0.0300; paired randomization over the same "
            "queries: p = 0.2, not significant at 0.05)") in text
    # the start is read from the curve (the students' evaluation settings), not the baselines table
    assert "best IDF-aware 0.5500 (λ=0.5) vs the untrained start (curve) 0.5600 → does not beat it (-0.0100)" in text


def test_report_latency_section_ratios_by_hand(tmp_path):
    root = tmp_path / "results"
    (root / "p" / "latency").mkdir(parents=True)
    rows = []
    for docs, free, bm25, siam, res in [(100, 0.30, 0.25, 6.0, False), (1000, 0.50, 0.50, 9.0, True)]:
        for system, ms in [("inference-free", free), ("bm25", bm25), ("siamese", siam)]:
            rows.append({"engine": "pisa", "system": system, "docs": docs, "p50_ms": ms, "resampled": res,
                         "top10_agreement": 0.99})
    pd.DataFrame(rows).to_csv(root / "p" / "latency" / "table.csv", index=False)
    (root / "p" / "latency" / "quality").mkdir()
    pd.DataFrame([{"engine": "pisa", "system": "inference-free", "reference": "ifsr-exact", "nDCG@10": 0.62,
                   "reference_nDCG@10": 0.63, "delta_nDCG@10": -0.01, "top10_agreement": 0.995}]).to_csv(
        root / "p" / "latency" / "quality" / "table.csv", index=False)
    text = write_report(root, "p").read_text()
    assert "inference-free on pisa vs ifsr-exact: top-10 agreement 0.995, nDCG@10 0.6200 vs 0.6300 (Δ -0.0100)" in text
    assert "| pisa | 100 | False | 0.300 | 0.250 | 6.00 | 1.20× | 20.0× | 0.990 |" in text  # 0.30/0.25, 6/0.3
    assert "| pisa | 1,000 | True | 0.500 | 0.500 | 9.00 | 1.00× | 18.0× |" in text
    assert "partly holds here (PISA inference-free / BM25 p50 from 1.00× to 1.20×" in text
    # the same notebook run again with a trained student (a preset's "03_latency@student") gets its own section
    student = root / "p" / "latency_student"
    student.mkdir()
    pd.DataFrame([{**r, "p50_ms": r["p50_ms"] / 2 if r["system"] == "inference-free" else r["p50_ms"]}
                  for r in rows]).to_csv(student / "table.csv", index=False)
    (student / "config.yaml").write_text("model: runs/p/abc/model\n")
    text = write_report(root, "p").read_text()
    part = text.split("Claim 4 again, `latency_student`")[1]
    assert "Document model: `runs/p/abc/model`." in part
    assert "| pisa | 100 | False | 0.150 | 0.250 | 6.00 | 0.60× | 40.0× |" in part
    assert "holds here (PISA inference-free / BM25 p50 from 0.50× to 0.60×" in part


def test_model_from_curve_picks_the_row_or_says_why(tmp_path):
    from ifsr.serving.latency import model_from_curve

    model = tmp_path / "runs" / "abc" / "model"
    model.mkdir(parents=True)
    (model / "modules.json").write_text("[]")
    curve = tmp_path / "curve.csv"
    pd.DataFrame([{"arm": "untrained", "lambda": float("nan"), "model": "splade-tiny"},
                  {"arm": "idf-flops", "lambda": 0.002, "model": str(model)},
                  {"arm": "idf-flops", "lambda": 0.01, "model": str(tmp_path / "gone" / "model")}]).to_csv(curve, index=False)
    assert model_from_curve(f"{curve}:idf-flops:0.002") == str(model)
    with pytest.raises(ValueError, match="no row with arm 'flops' and lambda 0.002"):
        model_from_curve(f"{curve}:flops:0.002")
    with pytest.raises(FileNotFoundError, match="not on disk"):
        model_from_curve(f"{curve}:idf-flops:0.01")
    with pytest.raises(ValueError, match="expected '<curve.csv>:<arm>:<lambda>'"):
        model_from_curve(str(curve))


def test_train_overrides_sit_over_the_presetread_config(tmp_path):
    from ifsr.exp.ablations import configure

    cfg = configure(str(ROOT / "configs" / "cpu.yaml"), train_overrides={"in_batch_negatives": True}, lambdas=[0.0])
    assert cfg.train.in_batch_negatives is True and cfg.lambdas == [0.0]
    assert cfg.train.steps == 300 and cfg.train.student_temperature == "auto"  # the rest of the YAML's train kept
    assert configure(str(ROOT / "configs" / "cpu.yaml")).train.in_batch_negatives is False
    with pytest.raises(ValueError, match="arms must be"):
        configure(str(ROOT / "configs" / "cpu.yaml"), arms=["tf-idf"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['in_batch'\]"):
        configure(str(ROOT / "configs" / "cpu.yaml"), train_overrides={"in_batch": True})


def test_report_has_a_section_per_sweep_variant(tmp_path):
    import yaml

    root = tmp_path / "results"
    for folder, v, flag in (("idf_flops", 0.55, False), ("idf_flops_inbatch", 0.66, True)):
        (root / "p" / folder).mkdir(parents=True)
        pd.DataFrame([
            {"dataset": "d", "arm": "flops", "lambda": 1.0, "flops": 1.0, "nDCG@10": 0.50},
            {"dataset": "d", "arm": "flops", "lambda": 0.1, "flops": 100.0, "nDCG@10": 0.70},
            {"dataset": "d", "arm": "idf-flops", "lambda": 0.5, "flops": 10.0, "nDCG@10": v},
        ]).to_csv(root / "p" / folder / "curve.csv", index=False)
        train = {"student": "s", "steps": 300, "batch_size": 8, "n_neg": 3, "max_length": 128}
        if flag:  # the main sweep's config predates the field: an absent field is its default, not a difference
            train["in_batch_negatives"] = True
        (root / "p" / folder / "config.yaml").write_text(yaml.safe_dump({"eval_max_length": 512, "train": train}))
    (root / "p" / "baselines").mkdir(parents=True)
    pd.DataFrame([{"dataset": "d", "system": "bm25", "nDCG@10": 0.60}]).to_csv(root / "p" / "baselines" / "table.csv",
                                                                             index=False)
    text = write_report(root, "p").read_text()
    main, variant = text.split("### Claim 1 again, `idf_flops_inbatch`")
    assert "IDF-aware 0.5500 vs plain 0.6000" in main and "does not beat it (-0.0500)" in main
    assert "IDF-aware 0.6600 vs plain 0.6000 (interpolated) → +0.0600" in variant
    assert "Settings that differ from the main sweep: train.in_batch_negatives: False → True." in variant
    assert "best IDF-aware 0.6600 (λ=0.5) vs bm25 0.6000 → beats it (+0.0600)" in variant.split("Bars again")[1]
    assert "the best IDF-aware student of any sweep here is `idf_flops_inbatch` λ=0.5: nDCG@10 0.6600" in main
    assert ("Claim 1 over every sweep with both arms: 1/2 IDF-aware points above the plain curve at matched FLOPS; "
            "0 of 0 Pareto pairs won by the IDF-aware arm.") in main


def test_report_pairs_sweeps_that_differ_only_in_the_training_seed(tmp_path):
    import yaml

    root = tmp_path / "results"
    train = {"student": "s", "steps": 600, "max_length": 256}
    for folder, seed, v, other in (("idf_flops", 0, 0.60, 128), ("idf_flops_long", 0, 0.68, 256),
                                   ("idf_flops_long_seed1", 1, 0.67, 256)):
        (root / "p" / folder).mkdir(parents=True)
        pd.DataFrame([{"dataset": "d", "arm": "idf-flops", "lambda": 0.0, "flops": 2.0, "nDCG@10": v},
                      {"dataset": "d", "arm": "untrained", "lambda": float("nan"), "flops": 2.1, "nDCG@10": 0.5}]
                     ).to_csv(root / "p" / folder / "curve.csv", index=False)
        (root / "p" / folder / "config.yaml").write_text(yaml.safe_dump(  # the grid (lambdas) may differ
            {"eval_max_length": 512, "lambdas": [0.0] if seed else [0.0, 0.01],
             "train": {**train, "seed": seed, "max_length": other}}))
    text = write_report(root, "p").read_text()
    assert ("the best IDF-aware student of any sweep here is `idf_flops_long` λ=0: nDCG@10 0.6800, FLOPS 2; the same "
            "settings by training seed: 0: 0.6800 (`idf_flops_long`), 1: 0.6700 (`idf_flops_long_seed1`), mean "
            "0.6750.") in text
    assert "- Seed noise: the training seed alone moved nDCG@10 by up to 0.0100 (seed repeats above).\n" in text
    seeds = text.split("## Seed repeats")[1].split("\n## ")[0]
    # only the pair that differs in train.seed alone (idf_flops differs in max_length as well); untrained rows skipped
    assert seeds.count("\n- ") == 1
    assert ("d idf-flops λ=0: seed 0 (`idf_flops_long`) 0.6800 (FLOPS 2), seed 1 (`idf_flops_long_seed1`) 0.6700 "
            "(FLOPS 2): Δ -0.0100 from the training seed alone; mean of the two 0.6750.") in seeds


def test_config_diff_fills_new_train_fields_with_defaults(tmp_path):
    import yaml

    from ifsr.report.compare import config_diff, read_config

    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"lambdas": [0.0], "train": {"steps": 300}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"lambdas": [0.0, 0.01],
                                                     "train": {"steps": 300, "in_batch_negatives": False, "seed": 1}}))
    assert config_diff(read_config(tmp_path / "a.yaml"), read_config(tmp_path / "b.yaml")) == [
        ("lambdas", [0.0], [0.0, 0.01]), ("train.seed", 0, 1)]
    assert read_config(tmp_path / "missing.yaml") is None


def test_report_why_lines_come_from_tables_and_configs(tmp_path):
    import yaml

    root = tmp_path / "results"
    (root / "p" / "baselines").mkdir(parents=True)
    (root / "p" / "teachers").mkdir(parents=True)
    pd.DataFrame([{"dataset": "d", "system": s, "nDCG@10": v} for s, v in
                  [("dense-teacher", 0.61), ("sparse-teacher", 0.60), ("ensemble-minmax", 0.70)]]).to_csv(
        root / "p" / "baselines" / "table.csv", index=False)
    pd.DataFrame([{"dataset": "d", "teacher": t, "nDCG@10": v, "p_value_vs_ensemble_minmax": p} for t, v, p in
                  [("dense", 0.64, 0.3), ("sparse", 0.60, 0.01), ("ensemble-minmax", 0.63, 1.0)]]).to_csv(
        root / "p" / "teachers" / "table.csv", index=False)
    (root / "p" / "teachers" / "config.yaml").write_text(yaml.safe_dump(
        {"sparse_teacher": "tiny", "pretrain_pairs": 0, "train": {"student": "tiny", "steps": 30, "batch_size": 4}}))
    why = write_report(root, "p").read_text().split("## Why")[1]
    assert "ensemble of the teachers (0.7000) is above each teacher (dense 0.6100, sparse 0.6000)" in why
    assert "The sparse teacher (`tiny`) is also the students' start" in why
    assert "a gap of up to 0.0100 nDCG@10 is not significant" in why  # dense: |0.63 - 0.64|, p 0.3; sparse p 0.01 left out


def test_dominated_pairs_by_hand():
    from ifsr.report.compare import dominated_pairs

    curve = pd.DataFrame([
        {"dataset": "d", "arm": "flops", "lambda": 0.0, "flops": 2.4, "nDCG@10": 0.651},
        {"dataset": "d", "arm": "flops", "lambda": 0.01, "flops": 1.5, "nDCG@10": 0.660},
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.0, "flops": 3.5, "nDCG@10": 0.658},
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.01, "flops": 1.4, "nDCG@10": 0.666},
    ])
    got = sorted((p["winner"], p["win"]["lambda"], p["lose"]["lambda"]) for p in dominated_pairs(curve, "d"))
    # idf 0.01 beats both plain points; plain 0.01 beats idf 0; plain 0 (2.4, .651) vs idf 0 (3.5, .658): neither
    assert got == [("flops", 0.01, 0.0), ("idf-flops", 0.01, 0.0), ("idf-flops", 0.01, 0.01)]


@pytest.mark.slow
def test_gpu_recipe_runs_on_cpu_in_miniature(data_root, minilm_path, splade_tiny_path, tmp_path):
    """configs/gpu.yaml's own path, which no session with a GPU has run yet: the MiniLM student with a new
    MLM head tied to its embeddings, the pre-training stage on the shared pairs, then fine-tuning from it,
    bf16 autocast. 1 + 2 steps on CPU, on a 300-document slice, 24 tokens (bf16 matmuls are slow on CPU)."""
    import dataclasses

    import yaml

    from ifsr.exp.ablations import configure, evaluate_trained, finetune_dataset, trained_model

    cfg = configure(str(ROOT / "configs" / "gpu.yaml"),
                    train_overrides={"steps": 2, "batch_size": 2, "max_length": 24, "use_cpu": True, "save_steps": 1,
                                     "logging_steps": 1, "warmup_steps": 0, "lambda_warmup_steps": 1},
                    corpus_limit=300, train_query_limit=8, mining_depth=20, pretrain_pairs=8,
                    pretrain_sources=["squad_dev", "medquad"], pretrain_steps=1, teacher_max_length=64,
                    eval_max_length=24, eval_datasets=["scifact"], data_dir=str(data_root),
                    runs_dir=str(tmp_path / "runs"), cache_dir=str(ROOT / ".cache" / "ifsr"))
    assert cfg.train.student == "all-MiniLM-L6-v2" and cfg.train.bf16 is True
    tc = dataclasses.replace(cfg.train, query_weights="idf", teacher="ensemble-minmax", lam=cfg.lambdas[0])
    model = trained_model(cfg, tc, lambda: finetune_dataset(cfg))
    pre = list((tmp_path / "runs").glob("pre-*/model/modules.json"))
    assert len(pre) == 1  # the pre-training stage ran, and fine-tuning started from its weights
    run = yaml.safe_load((model.parent / "train_config.yaml").read_text())
    assert run["student"] == str(pre[0].parent) and run["bf16"] is True and run["steps"] == 2
    (row,) = evaluate_trained(cfg, model)
    assert 0 <= row["nDCG@10"] <= 1 and row["flops"] > 0 and len(row["per_query"]) > 0
