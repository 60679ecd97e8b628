"""Notebooks stay thin, and the smoke preset runs the whole chain under papermill."""
import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from ifsr.distill.trainer import TEMPERATURE_GRID
from ifsr.exp.presets import load_presets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin(path):
    """A tagged, typed parameters cell first; then only calls into ifsr (no functions, classes, loops)."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    for line in code[0].source.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert ":" in line.split("=")[0] and "#" in line, f"untyped or uncommented parameter: {line!r}"
    for cell in code[1:]:
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ", "for ", "while ", "if ", "with open")), (
                f"{path.name}: logic belongs in ifsr, not in the notebook: {line!r}")


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path, data_root):
    """`ifsr replicate --preset smoke` in a scratch copy: every table, figure, config and manifest."""
    from ifsr.replicate import replicate

    root = tmp_path / "repo"
    for folder in ("notebooks", "configs"):
        shutil.copytree(ROOT / folder, root / folder)
    executed = replicate("smoke", root=root, data_dir=str(data_root.resolve()))
    assert {p.name for p in executed} >= {"00_baselines.ipynb", "02_idf_flops.ipynb", "01_teachers.ipynb",
                                          "03_latency.ipynb"}
    res = root / "results" / "smoke"
    curve = pd.read_csv(res / "idf_flops" / "curve.csv")
    assert set(curve["arm"]) == {"untrained", "bm25", "stage-1 start", "stage-1 start (flops)", "idf-flops", "flops",
                                 "flops+idf-query"}
    trained = curve[curve["arm"].isin(["idf-flops", "flops"])]
    assert set(trained["student_temperature"]) <= set(TEMPERATURE_GRID)  # smoke calibrates tau ("auto")
    assert set(trained["seed"]) == {0, 1, 2} and set(trained["dataset"]) == {"scifact", "cranfield"}
    assert trained.groupby(["dataset", "arm", "lambda"]).size().eq(3).all()  # every point once per seed
    assert curve["nDCG@10"].between(0, 1).all() and (curve.dropna(subset=["flops"])["flops"] > 0).all()
    for fig in ("idf_flops/curve.png", "idf_flops/training.png", "teachers/teachers.png"):
        assert (res / fig).stat().st_size > 1000
    teachers = pd.read_csv(res / "teachers" / "table.csv")
    assert set(teachers["teacher"]) == {"untrained", "dense", "sparse", "ensemble-minmax", "ensemble-raw"}
    # Claim 1's arm through both stages (issue 27): the IDF-aware stage-1 start of seed s is the teacher ablation's
    # min-max run of seed s, the plain arm has its own plain-FLOPS starts, and every stage-2 run starts from the
    # start of its own arm and seed
    for arm, label in (("idf-flops", "stage-1 start"), ("flops", "stage-1 start (flops)")):
        starts = curve[curve["arm"] == label].drop_duplicates("seed").set_index("seed")["model"]
        assert sorted(starts.index) == [0, 1, 2] and starts.nunique() == 3
        if arm == "idf-flops":
            minmax = teachers[teachers["teacher"] == "ensemble-minmax"].drop_duplicates("seed").set_index("seed")["model"]
            assert all(starts[s] == minmax[s] for s in starts.index)
        for _, r in curve[curve["arm"] == arm].drop_duplicates("model").iterrows():
            run_cfg = yaml.safe_load((root / Path(r["model"]).parent / "train_config.yaml").read_text())
            assert (root / run_cfg["student"]).resolve() == (root / starts[r["seed"]]).resolve()
    assert not set(curve[curve["arm"] == "stage-1 start"]["model"]) & set(curve[curve["arm"] == "stage-1 start (flops)"]["model"])
    per_q = pd.read_csv(res / "idf_flops" / "per_query.csv")
    judged = per_q.groupby(["dataset", "arm", "lambda", "seed"], dropna=False).size()
    assert judged.groupby("dataset").nunique().eq(1).all()  # the same queries in every row of a dataset
    base = pd.read_csv(res / "baselines" / "table.csv")
    assert {"bm25", "inference-free-untrained", "ensemble-minmax"} <= set(base["system"])
    # the sweep's BM25 is the baselines' own BM25 on the same 300-document slice
    bm25 = base[(base["system"] == "bm25") & (base["dataset"] == "scifact")]["nDCG@10"].item()
    assert curve[(curve["arm"] == "bm25") & (curve["dataset"] == "scifact")]["nDCG@10"].item() == pytest.approx(bm25)
    verdicts = pd.read_csv(res / "verdicts.csv")
    assert {"1", "2a", "2b", "3", "H1", "H2"} <= set(verdicts["claim"].astype(str))
    assert (verdicts["seeds"] == 3).all() and verdicts["verdict"].notna().all()
    latency = pd.read_csv(res / "latency" / "table.csv")
    assert set(latency["docs"]) == {300, 900} and set(latency["system"]) == {"inference-free", "bm25", "siamese"}
    smoke_latency = load_presets(ROOT / "configs" / "presets.yaml")["smoke"]["03_latency"]
    assert set(latency["engine"]) == set(smoke_latency["engines"])  # every engine setting has its rows
    assert latency["top10_agreement"].between(0, 1).all()
    capped = latency[latency["engine"] == "lucene"]  # max_docs: {lucene: 300}
    assert set(capped["docs"]) == {300} and len(capped) > 0
    assert (res / "latency" / "ratios.csv").is_file() and (res / "latency" / "latency.png").stat().st_size > 1000
    levers = pd.read_csv(res / "latency" / "levers" / "table.csv")
    assert levers["lever"].tolist() == ["none", "query-top-k", "doc-top-k", "lambda", "lambda=0.1+query-min-idf"]
    assert levers.loc[0, "delta scifact"] == 0 == levers.loc[0, "delta scifact lo"] == levers.loc[0, "delta scifact hi"]
    for ds in ("scifact", "cranfield"):  # every change has its paired interval around it
        assert (levers[f"delta {ds} lo"] <= levers[f"delta {ds}"] + 1e-12).all()
        assert (levers[f"delta {ds}"] <= levers[f"delta {ds} hi"] + 1e-12).all()
    # the combined lever: the same student, its queries pruned (fewer terms, the same documents)
    assert levers["model"].iloc[4] == levers["model"].iloc[3] and levers["doc_nnz"].iloc[4] == levers["doc_nnz"].iloc[3]
    assert levers["query_terms"].iloc[4] < levers["query_terms"].iloc[3]
    # the lambda lever times the curve's own idf-flops students of that lambda (seeds 0 and 1: lever_seeds 2), not
    # retrained ones, and its ratio rests on both seeds and both timing passes
    for i, model in enumerate(levers["model"].iloc[3].split(" ; ")):
        curve_model = curve[(curve["arm"] == "idf-flops") & (curve["lambda"] == 0.1) & (curve["seed"] == i)]["model"].iloc[0]
        assert (root / model).resolve() == (root / curve_model).resolve()
    assert levers["seeds"].iloc[3] == 2 and levers["seeds"].isna().iloc[0] and (levers["repeats"] == 2).all()
    assert levers["if_over_bm25_p"].between(0, 1).all() and latency["if_over_bm25_p"].dropna().between(0, 1).all()
    assert levers["model"].iloc[0] == "splade-tiny" and levers["doc_nnz"].iloc[3] != levers["doc_nnz"].iloc[0]
    assert (levers["if_over_bm25_lo"] <= levers["if_over_bm25"]).all() and (levers["bm25_p50_ms"] > 0).all()
    assert (levers["doc_nnz"].iloc[2] <= 16) and (res / "latency" / "levers" / "levers.png").stat().st_size > 1000
    assert "Best ratio reached" in (res / "REPORT.md").read_text() or "No setting reached" in (res / "REPORT.md").read_text()
    levers_manifest = json.loads((res / "latency" / "levers" / "manifest.json").read_text())
    assert levers_manifest["data"]["cranfield-test"] and levers_manifest["models"]
    for sub in ("baselines", "idf_flops", "teachers", "latency"):
        manifest = json.loads((res / sub / "manifest.json").read_text())
        assert manifest["data"] and manifest["models"] and manifest["wall_seconds"] > 0.5  # the whole notebook
        assert (res / sub / "config.yaml").is_file()
    assert (res / "REPORT.md").read_text().startswith("# Replication report")
    assert "Claim 1" in (root / "results" / "REPORT.md").read_text()
    # a second run does not overwrite finished results
    assert replicate("smoke", root=root, data_dir=str(data_root.resolve())) == []


@pytest.mark.parametrize("notebook, config, renamed", [("00_baselines", "ifsr.eval.config:BaselinesConfig", {"top_k": "k"}),
                                                       ("03_latency", "ifsr.exp.config:LatencyConfig", {})])
def test_a_notebook_parameter_has_its_configs_default(notebook, config, renamed):
    """Every default is declared once, in the config dataclass: a notebook parameter that feeds a config field
    (by name, or `renamed`) must default to that field's default, so an interactive run and a papermill run with
    no parameters build the same config."""
    import ast
    import dataclasses
    import importlib

    module, name = config.split(":")
    fields = {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
    import papermill

    params = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"))
    checked = 0
    for param, spec in params.items():
        field = fields.get(renamed.get(param, param))
        if field is None:
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        assert ast.literal_eval(spec["default"]) == default, f"{notebook}: {param} defaults differ from {name}.{field.name}"
        checked += 1
    assert checked >= 5  # the comparison ran over the shared parameters
