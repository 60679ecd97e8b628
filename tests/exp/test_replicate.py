"""The batch runner checks every parameter and config key before running, and refuses to overwrite."""
from pathlib import Path

import pandas as pd
import pytest

from conftest import repo_copy
from ifsr.exp.latency import model_from_curve
from ifsr.exp.presets import NOTEBOOKS, check_parameters, entry_parts, plan
from ifsr.replicate import replicate

ROOT = Path(__file__).resolve().parents[2]


def test_every_preset_plans_with_declared_parameters():
    for preset in ("smoke", "cpu", "gpu"):
        steps = plan(preset, ROOT, data_dir="somewhere")
        assert [n.stem for n, _, _ in steps][:3] == ["00_baselines", "01_teachers", "02_idf_flops"]  # stage 1, 2
        for notebook, out_dir, params in steps:
            assert params["preset"] == preset and params["data_dir"] == "somewhere"
            assert out_dir.parent == ROOT / "results" / preset
            assert out_dir.name.startswith(NOTEBOOKS[notebook.stem])


def test_entry_variants_name_their_folder():
    assert entry_parts("03_latency") == ("03_latency", "latency")
    assert entry_parts("03_latency@student") == ("03_latency", "latency_student")
    for bad in ("04_nothing", "03_latency@Bad-Name"):
        with pytest.raises(ValueError, match="unknown notebook entry"):
            entry_parts(bad)


def test_unknown_parameter_preset_and_config_key_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lamdas'\]"):
        check_parameters(ROOT / "notebooks" / "02_idf_flops.ipynb", {"lamdas": [0.1]})
    with pytest.raises(ValueError, match="unknown preset 'tpu'"):
        plan("tpu", ROOT)
    with pytest.raises(ValueError, match="unknown parameter"):
        plan("smoke", repo_copy(tmp_path / "a", "smoke:\n  02_idf_flops: {lambda: 1}\n"))
    with pytest.raises(ValueError, match="unknown notebook"):
        plan("smoke", repo_copy(tmp_path / "b", "smoke:\n  07_magic: {}\n"))
    bad_train = "smoke:\n  02_idf_flops: {config_path: configs/smoke.yaml, train_overrides: {in_batch: true}}\n"
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['in_batch'\]"):
        plan("smoke", repo_copy(tmp_path / "c", bad_train))
    with pytest.raises(ValueError, match="arms must be"):
        plan("smoke", repo_copy(tmp_path / "d", "smoke:\n  02_idf_flops: {config_path: configs/smoke.yaml, arms: [ones]}\n"))


def test_bad_latency_levers_are_refused_before_anything_runs(tmp_path):
    head = "smoke:\n  03_latency: {sizes: [300], lever_engine: bmp, "
    cases = [("levers: [none, fast]}", "lever 'fast'"),
             ("levers: [none, lambda=0.1]}", "need lever_students"),
             ("levers: [none, lambda=0.1], lever_students: configs/nope.yaml}", "no such file"),
             ("levers: [none, lambda=0.3+query-min-idf=2], lever_students: configs/smoke.yaml}", "not on the idf-flops curve"),
             ("levers: [none, lambda=0.1], lever_students: configs/smoke.yaml, lever_seeds: 9}", "lever_seeds 9"),
             ("levers: [none, lambda=0.1], lever_students: configs/smoke.yaml, lever_seeds: 0}", "lever_seeds 0")]
    for i, (tail, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            plan("smoke", repo_copy(tmp_path / str(i), head + tail + "\n"))
    with pytest.raises(ValueError, match="need lever_engine"):
        plan("smoke", repo_copy(tmp_path / "e", "smoke:\n  03_latency: {sizes: [300], levers: [none]}\n"))
    ok = plan("smoke", repo_copy(tmp_path / "ok", head + "levers: [none, lambda=0.1+query-min-idf=2], "
                                 "lever_students: configs/smoke.yaml}\n"))
    assert ok[0][2]["levers"][1] == "lambda=0.1+query-min-idf=2"


def test_finished_result_is_not_overwritten(tmp_path, capsys):
    root = repo_copy(tmp_path, "smoke:\n  01_teachers: {config_path: configs/smoke.yaml}\n")
    done = root / "results" / "smoke" / "teachers"
    done.mkdir(parents=True)
    (done / "manifest.json").write_text("{}")
    assert replicate("smoke", root) == []
    assert "use --force" in capsys.readouterr().out
    assert not (root / "results" / "smoke" / "LAUNCH.json").exists()  # written only when something runs


def test_model_from_curve_picks_the_row_or_says_why(tmp_path):
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


def test_a_stale_result_runs_again_and_says_why(tmp_path):
    """A finished training folder whose config.yaml trains other stages than the preset now resolves is stale
    (stage 2's steps: the sweep, not the teachers, whose stage-1 runs are unchanged); so is one evaluated at another
    length, or one whose config no longer loads. A matching folder, and a notebook without a training config, are
    not."""
    from ifsr.exp.config import save_config
    from ifsr.exp.presets import notebook_config
    from ifsr.replicate import stale_reason

    root = repo_copy(tmp_path, "smoke:\n  01_teachers: {config_path: configs/smoke.yaml}\n"
                               "  02_idf_flops: {config_path: configs/smoke.yaml}\n  03_latency: {sizes: [300]}\n")
    steps = plan("smoke", root, data_dir="d")
    for notebook, out_dir, params in steps:
        out_dir.mkdir(parents=True)
        cfg = notebook_config(root, params)
        if cfg is not None:
            save_config(cfg, out_dir / "config.yaml")
    assert [stale_reason(root, *step) for step in steps] == [None, None, None]
    yaml_path = root / "configs" / "smoke.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("  steps: 2\n", "  steps: 3\n"))
    teachers, sweep, latency = (stale_reason(root, *step) for step in steps)
    assert teachers is None and latency is None
    assert sweep == "not what configs/smoke.yaml resolves now: the training stages"
    yaml_path.write_text(yaml_path.read_text().replace("eval_max_length: 64", "eval_max_length: 128"))
    assert stale_reason(root, *steps[0]) == "not what configs/smoke.yaml resolves now: eval_max_length"
    (steps[0][1] / "config.yaml").write_text("preset: smoke\nno_such_field: 1\n")
    assert "its config.yaml no longer loads (" in stale_reason(root, *steps[0])


def test_a_latency_folder_is_stale_when_its_settings_or_students_change(tmp_path, data_root, splade_tiny_path,
                                                                        minilm_path):
    """A finished latency folder is stale when its config.yaml measured otherwise than its entry now resolves
    (where it reads and caches aside), and when its "lambda=" levers timed other students than the runs the
    lever_students YAML keys now (stage 2 trained one more step); its lever table names the runs it timed."""
    import dataclasses

    from ifsr.core.names import IDF_ARM
    from ifsr.exp.ablations import sweep_key
    from ifsr.exp.config import AblationConfig, LatencyConfig, load_config, save_config
    from ifsr.replicate import stale_reason

    root = repo_copy(tmp_path, "smoke:\n  03_latency: {sizes: [300], levers: [none, lambda=0.1], lever_engine: pisa,"
                               " lever_students: configs/smoke.yaml, lever_seeds: 2}\n")
    data = str(data_root.resolve())
    [(notebook, out_dir, params)] = plan("smoke", root, data_dir=data)
    (out_dir / "levers").mkdir(parents=True)
    fields = {f.name for f in dataclasses.fields(LatencyConfig)}
    save_config(load_config(LatencyConfig, **{k: v for k, v in params.items() if k in fields}), out_dir / "config.yaml")
    smoke = load_config(AblationConfig, root / "configs" / "smoke.yaml", data_dir=data)
    timed = " ; ".join(f"runs/smoke/{sweep_key(smoke, IDF_ARM, 0.1, seed)}/model" for seed in (0, 1))
    pd.DataFrame({"lever": ["none", "lambda"], "model": ["splade-tiny", timed]}).to_csv(
        out_dir / "levers" / "table.csv", index=False)
    assert stale_reason(root, notebook, out_dir, params, data) is None
    assert stale_reason(root, notebook, out_dir, {**params, "cache_dir": "elsewhere"}, data) is None
    assert (stale_reason(root, notebook, out_dir, {**params, "max_length": 128}, data)
            == "not what its preset entry resolves now: max_length (256 -> 128)")
    yaml_path = root / "configs" / "smoke.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("  steps: 2\n", "  steps: 3\n"))
    assert (stale_reason(root, notebook, out_dir, params, data)
            == "its students are not the runs configs/smoke.yaml resolves now: lambda=0.1 seed 0, lambda=0.1 seed 1")
    yaml_path.unlink()
    assert "its students cannot be keyed now (" in stale_reason(root, notebook, out_dir, params, data)
    (out_dir / "config.yaml").write_text("preset: smoke\nno_such_field: 1\n")
    assert "its config.yaml no longer loads (" in stale_reason(root, notebook, out_dir, params, data)


def test_wall_times_keep_the_longest_run_for_the_estimate(tmp_path):
    """A warm rerun (cached runs reused) records its own short wall time, but the estimate of the next run is the
    longest on record; a manifest from before the field counts its last run as the longest."""
    import json

    from ifsr.replicate import _estimate, _record_wall_time, wall_times

    manifest = tmp_path / "manifest.json"
    assert wall_times(tmp_path) is None and _estimate(None) == "no estimate: no earlier run's manifest"
    manifest.write_text(json.dumps({"wall_seconds": 2070.5}))  # an older manifest: no wall_seconds_longest
    assert wall_times(tmp_path) == (2070.5, 2070.5)
    _record_wall_time(manifest, 56.2, 2070.5)  # the warm rerun
    assert wall_times(tmp_path) == (56.2, 2070.5)
    assert _estimate(wall_times(tmp_path)) == "estimated up to 34m30s, the longest run on record (the last took 56s)"
    _record_wall_time(manifest, 3000.0, 2070.5)  # a slower cold run raises the record
    assert wall_times(tmp_path) == (3000.0, 3000.0)
    assert _estimate(wall_times(tmp_path)) == "estimated 50m00s from the last run's manifest"


def test_the_executed_notebook_keeps_its_outputs_and_loses_the_widget_state(tmp_path):
    """drop_widget_state removes metadata.widgets (the progress bars' live models) and nothing else; a notebook
    without it is left byte for byte."""
    import nbformat

    from ifsr.replicate import drop_widget_state

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "m1", "version_major": 2, "version_minor": 0},
        "text/plain": "encode docs: 100%|##########| 3/3"})]
    nb.cells = [cell]
    nb.metadata["papermill"] = {"duration": 1.5}
    plain = tmp_path / "plain.ipynb"
    plain.write_text(nbformat.writes(nb), encoding="utf-8")  # as papermill writes an executed notebook
    before = plain.read_bytes()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"m1": {"x": "y" * 1000}}}}
    heavy = tmp_path / "heavy.ipynb"
    heavy.write_text(nbformat.writes(nb), encoding="utf-8")
    drop_widget_state(heavy)
    drop_widget_state(plain)
    assert plain.read_bytes() == before
    assert heavy.read_bytes() == before  # the same notebook as one never given the widget state
    assert "encode docs: 100%" in heavy.read_text() and len(before) < 1000
