"""Issue 31: every benchmark validates its numeric flags before any work (argparse's usage line, exit 2, no
traceback) and runs from any folder. Before: `encode.py --docs -5` encoded the whole corpus, `--docs 0` gave a
traceback; `latency.py --min-query-idf nan` pruned every query term and still reported, `--out <a directory>`
and `--engines 'pisa(foo=1)'` failed only after the encoding; `gpu_plan.py --gpu-tflops -50` reported a
negative speed-up that "fits", and it failed outside the repository root (configs/presets.yaml)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("script, args, message", [
    ("encode.py", ["--docs", "-5"], "argument --docs: expected a positive integer, got '-5'"),
    ("encode.py", ["--docs", "0"], "argument --docs: expected a positive integer"),
    ("encode.py", ["--max-length", "0"], "argument --max-length: expected a positive integer"),
    ("encode.py", ["--repeats", "0"], "argument --repeats: expected a positive integer"),
    ("encode.py", ["--threads", "0"], "argument --threads: expected a positive integer"),
    ("train_step.py", ["--steps", "0"], "argument --steps: expected a positive integer"),
    ("train_step.py", ["--batch-size", "0"], "argument --batch-size: expected a positive integer"),
    ("train_step.py", ["--max-length", "-1"], "argument --max-length: expected a positive integer"),
    ("latency.py", ["--min-query-idf", "nan"], "argument --min-query-idf: expected a finite number"),
    ("latency.py", ["--n-queries", "0"], "argument --n-queries: expected a positive integer"),
    ("latency.py", ["--max-query-terms", "0"], "argument --max-query-terms: expected a positive integer"),
    ("latency.py", ["--engines", "pisa(foo=1)"], "unknown PISA options ['foo']"),
    ("latency.py", ["--engines", "bmp(foo=1)"], "unknown bmp options ['foo']"),
    ("gpu_plan.py", ["--gpu-tflops", "-50"], "argument --gpu-tflops: expected a positive number"),
    ("gpu_plan.py", ["--window-s", "0"], "argument --window-s: expected a positive number"),
    ("gpu_plan.py", ["--mini", "0"], "argument --mini: expected a positive integer"),
    ("eval_encode.py", ["--lengths", "0"], "argument --lengths: expected a positive integer"),
])
def test_bad_flag_is_a_usage_error_before_any_work(script, args, message, tmp_path):
    done = run(script, *args, cwd=tmp_path)  # from a folder outside the repository
    assert done.returncode == 2 and "usage:" in done.stderr and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not any(tmp_path.iterdir())


def test_latency_out_that_is_a_directory(tmp_path):
    done = run("latency.py", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and f"argument --out: {tmp_path} is a directory" in done.stderr


def test_gpu_plan_reads_the_repositorys_presets_from_any_folder(tmp_path):
    done = run("gpu_plan.py", "--preset", "gpu-typo", cwd=tmp_path)
    assert done.returncode == 2 and "gpu_plan: error: unknown preset 'gpu-typo'" in done.stderr, done.stderr[-2000:]
    assert "'gpu-quick'" in done.stderr and "Traceback" not in done.stderr


def test_encode_unknown_data_set_is_a_usage_error(tmp_path, data_root):
    done = run("encode.py", "--data", "no_such_set", "--data-dir", str(data_root), cwd=tmp_path)
    assert done.returncode == 2 and "--data no_such_set" in done.stderr and "Traceback" not in done.stderr
