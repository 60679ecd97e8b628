"""The runner's bad-input errors, failed forced runs, LAUNCH.json, progress lines, and the README's two
commands (the Makefile's dry run and the data-directory discovery). No notebook really runs here:
papermill.execute_notebook is replaced by a stand-in that writes what a notebook writes (or fails)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from conftest import repo_copy
from ifsr.cli import main
from ifsr.replicate import plan, replicate

ROOT = Path(__file__).resolve().parents[2]
TEACHERS = "smoke:\n  01_teachers: {config_path: configs/smoke.yaml}\n"


def _fake_papermill(monkeypatch, fail: bool = False, wall: float = 1.0, fail_after_manifest: bool = False):
    """Stand-in for papermill.execute_notebook: writes the executed notebook, a figure and (unless it
    fails) the manifest, as the real notebooks do at their end."""
    calls = []

    def execute(src, dest, parameters=None, **kw):
        calls.append((Path(src).name, kw))
        out = Path(parameters["out_dir"])
        Path(dest).write_text(nbformat.writes(nbformat.v4.new_notebook()))  # papermill writes a notebook
        (out / "out.csv").write_text("new\n")
        (out / "figure.png").write_bytes(b"png")
        if fail:
            raise RuntimeError("cell 3 raised")
        (out / "manifest.json").write_text(json.dumps({"new": True, "wall_seconds": wall}))
        if fail_after_manifest:
            raise RuntimeError("the last cell raised")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return calls


def _data(tmp_path: Path) -> str:
    """A fake data directory carrying what a real one must for the notebooks to start: the IDF table."""
    from ifsr.data.beir import default_idf_path

    idf = default_idf_path(tmp_path / "data")
    idf.parent.mkdir(parents=True, exist_ok=True)
    idf.write_text("{}")
    return str(tmp_path / "data")


def _finished(root: Path, folder: str = "teachers", wall: float = 321.0) -> Path:
    done = root / "results" / "smoke" / folder
    done.mkdir(parents=True)
    (done / "manifest.json").write_text(json.dumps({"old": True, "wall_seconds": wall}))
    (done / "out.csv").write_text("old\n")
    return done


# --------------------------------------------------------------------------- failed --force run

def test_failed_forced_run_leaves_the_folder_unfinished(tmp_path, monkeypatch):
    root = repo_copy(tmp_path, TEACHERS)
    done = _finished(root)
    _fake_papermill(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match="cell 3"):
        replicate("smoke", root, force=True, data_dir=_data(tmp_path))
    assert not (done / "manifest.json").exists()  # not "finished": the next run redoes it
    calls = _fake_papermill(monkeypatch)
    assert [p.name for p in replicate("smoke", root, data_dir=_data(tmp_path))] == ["01_teachers.ipynb"]
    assert [c[0] for c in calls] == ["01_teachers.ipynb"]
    assert json.loads((done / "manifest.json").read_text())["new"]
    assert not (done / "manifest.previous.json").exists()  # the old manifest goes once the new one is there


def test_notebook_that_fails_after_writing_its_manifest_is_not_finished(tmp_path, monkeypatch):
    root = repo_copy(tmp_path, TEACHERS)
    _fake_papermill(monkeypatch, fail_after_manifest=True)
    with pytest.raises(RuntimeError, match="last cell"):
        replicate("smoke", root, data_dir=_data(tmp_path))
    assert not (root / "results" / "smoke" / "teachers" / "manifest.json").exists()


def test_forced_run_that_succeeds_replaces_the_manifest(tmp_path, monkeypatch, capsys):
    root = repo_copy(tmp_path, TEACHERS)
    done = _finished(root)
    _fake_papermill(monkeypatch)
    replicate("smoke", root, force=True, data_dir=_data(tmp_path))
    manifest = json.loads((done / "manifest.json").read_text())
    assert manifest["new"] and manifest["wall_seconds"] >= 0
    assert sorted(p.name for p in done.iterdir()) == ["01_teachers.ipynb", "figure.png", "manifest.json", "out.csv"]
    out = capsys.readouterr().out
    assert "[1/1] 01_teachers.ipynb" in out and "estimated 5m21s from the last run's manifest" in out


def test_a_data_dir_without_the_idf_table_is_refused_before_any_notebook(tmp_path, monkeypatch, capsys):
    """Issue 31: `ifsr replicate --data-dir <a folder without idf/>` ran the first notebook and ended in a papermill
    traceback after 11 s. Now one line and exit 2, before any notebook or LAUNCH.json."""
    root = repo_copy(tmp_path, "smoke:\n  00_baselines: {datasets: [scifact]}\n"
                           "  01_teachers: {config_path: configs/smoke.yaml}\n")
    calls = _fake_papermill(monkeypatch)
    (tmp_path / "empty").mkdir()
    for data, fragment in ((tmp_path / "empty", "no idf/msmarco_bert-base-uncased_idf.json (the MS MARCO IDF table "
                                                "00_baselines, 01_teachers read)"),
                           (tmp_path / "absent", "no such directory")):
        assert main(["replicate", "--preset", "smoke", "--root", str(root), "--data-dir", str(data)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ifsr replicate: error: data directory {data}: {fragment}"), err
        assert err.count("\n") == 1 and calls == [] and not (root / "results").exists()


# --------------------------------------------------------------------------- --only

def test_only_with_an_unknown_name_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    root = repo_copy(tmp_path, "smoke:\n  00_baselines: {datasets: [scifact]}\n"
                           "  02_idf_flops: {config_path: configs/smoke.yaml}\n")
    calls = _fake_papermill(monkeypatch)
    with pytest.raises(ValueError, match=r"--only 01_idf_flopz: not an entry of preset 'smoke'; "
                                         r"known: \['00_baselines', '02_idf_flops'\]"):
        plan("smoke", root, only=["00_baselines", "01_idf_flopz"])
    assert main(["replicate", "--preset", "smoke", "--root", str(root), "--data-dir", str(tmp_path),
                 "--only", "00_baselines", "01_idf_flopz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ifsr replicate: error: --only 01_idf_flopz") and err.count("\n") == 1
    assert calls == [] and not (root / "results").exists()


# --------------------------------------------------------------------------- presets.yaml

@pytest.mark.parametrize("text, message", [
    ("smoke:\n  - 00_baselines\n  - 02_idf_flops\n",
     r"presets\.yaml: line 1: preset 'smoke': expected a mapping notebook -> parameters .*got a list"),
    ("smoke:\n  00_baselines: {datasets: [scifact]\n  02_idf_flops: {}\n",
     r"presets\.yaml: line 3: YAML syntax error: expected ',' or '}'"),
    ("smoke:\n  00_baselines: [scifact]\n",
     r"presets\.yaml: line 2: preset 'smoke', 00_baselines: expected a mapping parameter -> value, got a list"),
    ("- smoke\n", r"presets\.yaml: expected a mapping preset -> notebook -> parameters, got a list"),
])
def test_malformed_presets_file_is_one_line_with_file_and_line(tmp_path, capsys, text, message):
    root = repo_copy(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        plan("smoke", root)
    assert main(["replicate", "--preset", "smoke", "--root", str(root), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ifsr replicate: error: ") and str(root / "configs" / "presets.yaml") in err
    assert err.count("\n") == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- LAUNCH.json, progress, paths

def test_launch_is_written_only_when_something_runs(tmp_path, monkeypatch, capsys):
    root = repo_copy(tmp_path, TEACHERS)
    _finished(root)
    calls = _fake_papermill(monkeypatch)
    assert replicate("smoke", root, data_dir=str(tmp_path)) == []
    assert calls == [] and not (root / "results" / "smoke" / "LAUNCH.json").exists()
    assert "use --force" in capsys.readouterr().out


def test_progress_lines_and_the_paths_of_report_and_figures(tmp_path, monkeypatch, capsys):
    root = repo_copy(tmp_path, "smoke:\n  00_baselines: {datasets: [scifact]}\n"
                           "  01_teachers: {config_path: configs/smoke.yaml}\n")
    calls = _fake_papermill(monkeypatch)
    replicate("smoke", root, data_dir=_data(tmp_path))
    out = capsys.readouterr().out
    assert "[1/2] 00_baselines.ipynb" in out and "no estimate" in out and "[2/2] 01_teachers.ipynb" in out
    assert "elapsed" in out and "nothing left" in out
    assert f"report: {root / 'results' / 'smoke' / 'REPORT.md'}" in out
    for folder in ("baselines", "teachers"):
        assert str(root / "results" / "smoke" / folder / "figure.png") in out
    assert all(kw["progress_bar"] for _, kw in calls)  # papermill's per-cell bar with its ETA
    launch = json.loads((root / "results" / "smoke" / "LAUNCH.json").read_text())
    assert len(launch["notebooks"]) == 2
    # a forced rerun estimates each notebook from the last run's manifest
    for folder in ("baselines", "teachers"):
        (root / "results" / "smoke" / folder / "manifest.json").write_text(json.dumps({"wall_seconds": 2.0}))
    replicate("smoke", root, force=True, data_dir=_data(tmp_path))
    assert "estimated 2s from the last run's manifest; ~4s left for the preset" in capsys.readouterr().out


# --------------------------------------------------------------------------- the README's two commands

def test_data_dir_discovery_order(tmp_path):
    from ifsr.data.beir import find_data_dir

    repo = tmp_path / "work" / "repo"
    repo.mkdir(parents=True)
    path, why = find_data_dir(repo, {})
    assert path == repo / "data" and "downloaded" in why  # nothing anywhere: ./data, BEIR sets by name
    (repo / "data").mkdir()
    assert find_data_dir(repo, {}) == (repo / "data", "./data")
    shared = tmp_path / "work" / "shared" / "data"
    shared.mkdir(parents=True)
    assert find_data_dir(repo, {})[0] == shared  # ../shared/data before ./data
    assert find_data_dir(repo, {"IFSR_DATA_DIR": str(tmp_path / "mine")})[0] == tmp_path / "mine"  # env first
    assert find_data_dir(repo, {"IFSR_DATA_DIR": ""})[0] == shared  # empty counts as unset


def _make_n(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    res = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")})
    return res.stdout


def test_make_sets_up_once_then_reuses_the_venv(tmp_path):
    fresh = _make_n("replicate", f"VENV={tmp_path / 'new'}")
    assert fresh.index("-m venv") < fresh.index("install -q torch==2.13.0") < fresh.index('install -q -e ".[')
    assert f"{tmp_path / 'new'}/bin/python -m ifsr.cli replicate --preset cpu" in fresh  # the venv's python
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".ifsr-installed").touch()
    os.utime(venv / ".ifsr-installed", (ROOT.joinpath("pyproject.toml").stat().st_mtime + 10,) * 2)
    again = _make_n("test", f"VENV={venv}")
    assert "pip install" not in again and "-m venv" not in again  # idempotent: nothing reinstalled
    assert f"{venv}/bin/python -m pytest -q -p no:cacheprovider" in again and "find_data_dir" in again
    assert "--preset smoke" in _make_n("smoke", f"VENV={venv}")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make replicate" in readme
    assert "IFSR_REQUIRE_DATA=1" in ci and "make test VENV=.venv-ci" in ci
