"""benchmarks/latency.py refuses bad lever arguments with argparse's usage line and exit code 2, before any work."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "latency.py"


@pytest.mark.parametrize("args, message", [
    (["--levers", "none", "lambda=0.08"], "--lever-students"),
    (["--levers", "none", "lambda=0.08+query-min-idf=2"], "--lever-students"),
    (["--levers", "none", "doc-top-k=8"], "--levers needs --lever-engine"),
    (["--levers", "none", "query-top-k=8+query-top-k=4", "--lever-engine", "pisa"], "each kind once"),
    (["--sizes", "tiny"], "a size is 'scifact', 'real' or a number"),
    (["--levers", "none", "lambda=0.08", "--lever-engine", "pisa", "--lever-students", "configs/cpu.yaml",
      "--lever-seeds", "0"], "argument --lever-seeds: expected a positive integer"),
])
def test_bad_lever_arguments_exit_2_with_a_usage_line(args, message, tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--cache-dir", str(tmp_path), *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was encoded or built
