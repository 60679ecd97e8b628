"""The device script (scripts/gpu_replicate.sh) in miniature on CPU: `run` replicates a preset entry in a
scratch copy and packs its results and log into $OUT; `dry-run` prints the planned work and the estimate."""
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _scratch(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for folder in ("notebooks", "configs", "scripts", "benchmarks"):
        shutil.copytree(ROOT / folder, root / folder)
    return root


def _git_repo(root: Path) -> None:
    """The carry counts tracked and untracked files, and results record the commit: make the scratch a repo."""
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scratch"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.mark.slow
def test_prepare_then_run_without_the_dense_teachers_weights(tmp_path, data_root):
    """The device path in miniature: `prepare smoke` here (no wheels), then a fresh cache and runs folder, as
    on a bare device machine, and `run smoke` through the slim dense-teacher package: the training notebooks
    find every dense-teacher score they need in the carried cache (the weights are not on the path)."""
    root, out = _scratch(tmp_path), tmp_path / "out"
    out.mkdir()
    _git_repo(root)
    script = str(root / "scripts" / "gpu_replicate.sh")
    env = {**os.environ, "PY": sys.executable, "NO_WHEELS": "1", "IFSR_DATA_DIR": str(data_root.resolve())}
    res = subprocess.run(["bash", script, "prepare", "smoke"], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert '"teacher_score_dirs": 2' in res.stdout and "carry:" in res.stdout and "fits" in res.stdout
    assert not list((root / ".device").rglob("*.safetensors"))  # no dense-teacher weights travel
    assert (root / "results" / "smoke" / "baselines" / "manifest.json").is_file()
    shutil.rmtree(root / ".cache")  # a bare machine: only what .device/ carries
    shutil.rmtree(root / "runs", ignore_errors=True)
    env = {k: v for k, v in env.items() if k != "IFSR_DATA_DIR"}
    env.update(NO_INSTALL="1", OUT=str(out), ARGS="--only 02_teachers 01_idf_flops")
    res = subprocess.run(["bash", script, "run", "smoke"], env=env, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    log = (out / "replicate.log").read_text()
    assert f"dense teacher: {root / '.device' / 'site'}" in log and "[2/2]" in log
    with tarfile.open(out / "results-smoke.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"results/smoke/baselines/manifest.json", "results/smoke/teachers/manifest.json",
            "results/smoke/idf_flops/manifest.json"} <= names


def test_run_refuses_without_out_and_unknown_commands(tmp_path):
    root = _scratch(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    res = subprocess.run(["bash", str(root / "scripts" / "gpu_replicate.sh"), "run", "smoke"], env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0 and "OUT" in res.stderr
    res = subprocess.run(["bash", str(root / "scripts" / "gpu_replicate.sh"), "launch"], capture_output=True, text=True)
    assert res.returncode == 2 and "dry-run" in res.stderr


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_the_estimate(data_root):
    env = {**os.environ, "PY": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_replicate.sh"), "dry-run", "smoke"], env=env,
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    lines = res.stdout.splitlines()
    train = [line for line in lines if line.startswith("train ")]
    # 12 stage-1 runs (4 teachers x 3 seeds), the plain arm's 3 own stage-1 starts (issue 27) and 12 stage-2 runs
    # (2 arms x 2 lambdas x 3 seeds), of 2 steps each
    assert train and train[0].split()[1] == "splade-tiny" and int(train[0].split()[4]) == 54
    assert any(line.startswith("estimated device time") for line in lines)


def test_plan_refuses_an_unknown_preset(data_root):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_plan.py"), "--preset", "gpu-typo"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 2 and "gpu_plan: error: unknown preset 'gpu-typo'" in res.stderr
    assert "Traceback" not in res.stderr
