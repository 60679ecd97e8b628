"""The device script (scripts/gpu_replicate.sh) on CPU: `run` refuses without $OUT; `dry-run` prints the planned work
and the estimate. `prepare smoke` then `run smoke` on a bare cache, through the slim dense-teacher copy and the carried
wheels' install, is scripts/device_image_check.sh (make test), in a stand-in for the device image."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _scratch(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for folder in ("notebooks", "configs", "scripts", "benchmarks"):
        shutil.copytree(ROOT / folder, root / folder)
    return root


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
    verdicts = ("fits, within the 0.6 margin", "fits the window but NOT the 0.6 margin", "does NOT fit")
    assert any(line.startswith("estimated device time") and any(v in line for v in verdicts) for line in lines)
    # each stage's own cost, measured on a miniature stage, and the checkpoints (2 steps saving every step)
    assert any(line.startswith("fixed: 27 training stages x ") and "+ 54 checkpoints x " in line for line in lines)
    assert "measured here" in lines[0]


def test_plan_refuses_an_unknown_preset(data_root):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_plan.py"), "--preset", "gpu-typo"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 2 and "gpu_plan: error: unknown preset 'gpu-typo'" in res.stderr
    assert "Traceback" not in res.stderr
