"""Run `python -m ifsr.cli` as a subprocess; write tiny BEIR sets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DOCS = [("d1", "Lung", "Alveolar macrophages clear inhaled particles from the lung."),
        ("d2", "Plate", "Boundary layer transition on a flat plate at supersonic speed."),
        ("d3", "", "Vitamin D deficiency is linked to bone fractures in older adults."),
        ("d4", "Heart", "Statins lower cholesterol and reduce heart attack risk.")]
QUERIES = [("q1", "what clears particles from the lung"), ("q2", "supersonic boundary layer"),
           ("q3", "vitamin d and fractures")]


# The encoding cache of `ifsr evaluate | export | index` (on by default) for these tests: one new folder per test
# session, so that no test reads what an earlier session encoded, and none writes into the checkout's .cache/ifsr.
CACHE_DIR = tempfile.mkdtemp(prefix="ifsr-cli-tests-cache-")


def ifsr(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "IFSR_CACHE_DIR": CACHE_DIR}
    return subprocess.run([sys.executable, "-m", "ifsr.cli", *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_beir(root: Path, docs=DOCS, queries=QUERIES) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, title, text in docs:
            f.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, text in queries:
            f.write(json.dumps({"_id": i, "text": text}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")
    return root


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *fragments: str) -> str:
    """Exit code 2, no traceback, and stderr's last line `ifsr <command>: error: ...` holding `fragments`."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"ifsr {command}: error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
