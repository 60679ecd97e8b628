#!/usr/bin/env bash
# A preset's whole replication on the lent device machine in one call, prepared here.
#
#   scripts/gpu_replicate.sh dry-run [PRESET]   here: planned work, estimated device time (benchmarks/gpu_plan.py)
#                                               and the size of what the call must carry (limit 64 MiB)
#   scripts/gpu_replicate.sh prepare [PRESET]   here, on CPU: .device/ = the data the preset reads (one archive),
#                                               the wheels of scripts/device_wheels.txt (what the device image,
#                                               scripts/device_image.txt, lacks) for its CPython 3.12, the dense
#                                               teacher's package WITHOUT its 87 MiB of weights plus its cached
#                                               scores of the training candidates (ifsr.exp.carry), and
#                                               results/PRESET/baselines run here (they travel as untracked
#                                               files); exit 2 if the carry is over 64 MiB
#   scripts/gpu_replicate.sh install [DIR]      the wheels of DIR (.device/wheels) into $SITE: `run`'s first step
#   scripts/gpu_replicate.sh run [PRESET]       there (the device tool's command, carry [".device"]): install the
#                                               wheels into $SITE, unpack the data, seed the cache,
#                                               `ifsr replicate --preset PRESET`, pack results/PRESET and the log
#                                               into $OUT
#
# CACHE_FROM=DIR (prepare): seed .cache/ifsr from another checkout's (hard links), e.g. one that ran the cpu preset:
# its baselines (the same 00_baselines parameters) and fine-tuning candidates have the same keys as gpu-quick's.
# PRESET defaults to gpu-quick; SITE to /tmp/site. NO_WHEELS=1 skips the wheels' download in prepare and
# NO_INSTALL=1 their install in run (a python that holds them already). scripts/device_image_check.sh (CI)
# prepares `smoke` with NO_WHEELS=1, puts its own wheels of the same list in .device/wheels and runs `run smoke`
# WITH the install, in a stand-in for the image.
# transformers, tokenizers and huggingface-hub are the image's (5.17.0, 0.23.2, 1.33.0): the core, student,
# trainer, teacher and evaluation tests passed here with those versions. Nothing is written outside .device/,
# .cache/, runs/, results/, $SITE and $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}; preset=${2:-gpu-quick}
if [ -z "${PY:-}" ]; then  # the project's venv here; the image's python3 there
    PY=python3
    if [ -x .venv/bin/python ] && [ "$cmd" != run ]; then PY=.venv/bin/python; fi
fi
LIMIT=$((64 * 1024 * 1024))
WHEEL_LIST=scripts/device_wheels.txt  # name==version a line: what the device image lacks (read by the CI check too)
SITE=${SITE:-/tmp/site}

wheel_specs() { grep -v '^[[:space:]]*\(#\|$\)' "$WHEEL_LIST"; }

install_wheels() {  # the wheels of folder $1 into $SITE, --no-deps, offline (as there; the CI check does the same)
    local whl=("$1"/*.whl)
    [ -e "${whl[0]}" ] || { echo "gpu_replicate: error: no wheels in $1" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${whl[@]}"
}

carry_report() {  # the bytes a device call would carry: tracked and untracked-not-ignored files + .device/
    "$PY" - "$LIMIT" <<'PY'
import subprocess, sys
from pathlib import Path
limit = int(sys.argv[1])
def listed(*args):
    out = subprocess.run(["git", "ls-files", *args], capture_output=True, text=True, check=True).stdout
    return [Path(p) for p in out.splitlines() if Path(p).is_file() and not p.startswith(".device/")]
parts = {"tracked files": sum(p.stat().st_size for p in listed()),
         "untracked files (results made here)": sum(p.stat().st_size for p in listed("--others", "--exclude-standard"))}
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
    rm -rf .device && mkdir -p .device/wheels
    if [ -n "${CACHE_FROM:-}" ]; then  # another checkout's .cache/ifsr: content-keyed, so a hit is the same work
        [ -d "$CACHE_FROM" ] || { echo "gpu_replicate: error: CACHE_FROM=$CACHE_FROM is not a folder" >&2; exit 2; }
        mkdir -p .cache/ifsr && cp -rln "$CACHE_FROM"/. .cache/ifsr/  # hard links; nothing here is overwritten
    fi
    "$PY" -m ifsr.exp.carry "$preset" .device --data-dir "$data"
    # the data the preset reads: both BEIR sets, the IDF table, and the pre-training pairs it draws (.device/pairs,
    # ifsr.exp.carry.trim_pairs: 14 MiB of pair files cut to those pairs) or, when none was trimmed, every pair file
    if [ -d .device/pairs ]; then pairs=(-C "$PWD/.device" pairs); else pairs=(pairs); fi
    tar -czf .device/data.tar.gz -C "$data" beir/scifact beir/cranfield idf "${pairs[@]}"
    rm -rf .device/pairs
    if [ "${NO_WHEELS:-0}" != 1 ]; then
        mapfile -t specs < <(wheel_specs)
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .device/wheels "${specs[@]}"
    fi
    # The baselines (their dense rows encode whole corpora with the dense teacher) run here, on CPU; the device
    # run finds them finished. The results index is put back as it was (the device run writes its own).
    index=results/REPORT.md; saved=""
    if [ -f "$index" ]; then saved=$(mktemp); cp "$index" "$saved"; fi
    "$PY" -m ifsr.cli replicate --preset "$preset" --only 00_baselines --data-dir "$data"
    if [ -n "$saved" ]; then cp "$saved" "$index"; rm -f "$saved"; fi
    carry_report
    ;;
run)
    : "${OUT:?OUT (the folder whose files come back) must be set}"
    if [ "${NO_INSTALL:-0}" != 1 ]; then
        install_wheels .device/wheels
        export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
    fi
    # the slim model packages come first on the path, so a weights-less copy is what the run resolves
    if [ -d .device/site ]; then export PYTHONPATH=$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}; fi
    if [ -f .device/data.tar.gz ]; then
        rm -rf .device/data && mkdir -p .device/data && tar -xzf .device/data.tar.gz -C .device/data
    fi
    if [ -d .device/cache ]; then mkdir -p .cache/ifsr && cp -r .device/cache/. .cache/ifsr/; fi
    data=${DATA_DIR:-.device/data}
    set +e
    {
        "$PY" -c 'from ifsr.core.encoder import resolve_model_path as r; print("dense teacher:", r("all-MiniLM-L6-v2"))'
        # shellcheck disable=SC2086
        PYTHONUNBUFFERED=1 "$PY" -m ifsr.cli replicate --preset "$preset" --data-dir "$data" ${ARGS:-}
    } 2>&1 | tee "$OUT/replicate.log"
    rc=${PIPESTATUS[0]}
    set -e
    [ -d "results/$preset" ] && tar -czf "$OUT/results-$preset.tar.gz" "results/$preset"
    exit "$rc"
    ;;
install)  # the first step of `run`, alone: scripts/gpu_replicate.sh install [WHEEL_DIR (.device/wheels)]
    install_wheels "${2:-.device/wheels}"
    ;;
*)
    awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2  # the header above
    exit 2
    ;;
esac
