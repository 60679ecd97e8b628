"""scripts/walkthrough.sh: the README's "Train your own" block, run as written and timed per command. Here `ifsr`
is a stand-in that records its arguments (the real chain takes minutes), so this checks the script: every
command of the block, in order, in a fresh copy of the checkout, with its time."""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_IFSR = f"""#!{sys.executable}
import os, sys
with open(os.environ["FAKE_IFSR_CALLS"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "train":
    print("model: runs/examples/key/model")
"""


def test_walkthrough_runs_the_readme_block_and_times_each_command(tmp_path):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    (bin_dir / "ifsr").write_text(FAKE_IFSR)
    (bin_dir / "ifsr").chmod(stat.S_IRWXU)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "IFSR_DATA_DIR": "/data", "FAKE_IFSR_CALLS": str(calls)}
    proc = subprocess.run([str(ROOT / "scripts" / "walkthrough.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (copy,) = tmp_path.glob("ifsr-walkthrough.*")
    assert (copy / "README.md").read_bytes() == subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:README.md"],
                                                               capture_output=True, check=True).stdout
    verbs = [shlex.split(line) for line in calls.read_text().splitlines()]
    assert [v[0] for v in verbs] == ["idf", "train", "evaluate", "export", "index", "search"]
    assert verbs[2][:3] == ["evaluate", "--model", "runs/examples/key/model"]  # MODEL carried over from train.log
    assert "--max-length" not in verbs[2] and "/data/beir/scifact" in verbs[4]  # the model's own length
    log = (copy / "my" / "walkthrough.log").read_text().splitlines()
    commands = [line for line in log if line.startswith("$ ")]
    timed = [line for line in log if line.startswith("[") and " s wall, " in line]
    assert len(commands) == len(timed) == 9 and log[-1] == "total: " + log[-1].split()[1] + " s for 9 commands"
    assert [t.split("] ", 1)[1] for t in timed] == [c[2:] for c in commands]
