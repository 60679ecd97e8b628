#!/usr/bin/env bash
# Will the device run work on the device image? Checked here, on CPU, in a stand-in for the image (make test, CI).
#
#   scripts/device_image_check.sh                  the whole check: build (or reuse) the stand-in, import every
#                                                  carried wheel's modules and ifsr's run in it, then, in a scratch
#                                                  copy of this checkout, `gpu_replicate.sh prepare smoke` (the
#                                                  project's venv, as a developer prepares) and `run smoke` in the
#                                                  stand-in, the wheels installed as there (the notebooks the gpu
#                                                  presets run, papermill's kernels included)
#   scripts/device_image_check.sh venv             build (or reuse) the stand-in only; prints its folder
#   scripts/device_image_check.sh imports DIR      with the stand-in's python (or $IMAGE_PY): install DIR's wheels as
#                                                  `run` does (gpu_replicate.sh install) and import $IMPORTS (default:
#                                                  every top-level module of those wheels and IFSR_MODULES below)
#
# The stand-in: a venv of this machine's python3 that holds only packages of the image's list
# (scripts/device_image.txt), at the versions it gives (torch: the CPU build of the Makefile's TORCH; numpy, whose
# 2.5.2 needs python 3.12: the newest this python has), with whatever they pull in that the image lacks removed;
# plus exactly the carried wheels (scripts/device_wheels.txt), at their versions, built for this python (prepare
# fetches them for the image's 3.12). Nothing of the project's venv. It is built once per machine and lists, under
# $DEVICE_CHECK_CACHE (default ~/.cache/ifsr/device-image), keyed by both lists, the roots, TORCH and the python.
# PY: the project's python, for `prepare` (default .venv/bin/python). Exit 2 with one line on a failure.
# Cost (issue 28, 2 cores shared with a load of ~6): building the stand-in 2 min (once); the check 57 min wall,
# ~12 CPU-min, nearly all of it the smoke prepare + run that tests/test_gpu_script.py ran before (moved here).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
cmd=${1:-check}
PY=${PY:-.venv/bin/python}
TORCH=${TORCH:-$(sed -n 's/^TORCH ?= *//p' Makefile)}  # one place: the Makefile's
IMAGE_LIST=scripts/device_image.txt
WHEEL_LIST=scripts/device_wheels.txt
# What the run needs of the image, installed with their dependencies (the rest of the image is not needed here)
ROOTS=(transformers tokenizers huggingface-hub safetensors accelerate numpy scipy pandas matplotlib scikit-learn
       pyarrow xxhash fsspec filelock pyyaml tqdm requests click aiohttp psutil pygments jinja2 python-dateutil
       typing-extensions packaging)
# ifsr's modules the device run imports, beside the carried wheels' own
IFSR_MODULES=(ifsr.cli ifsr.replicate ifsr.distill.trainer ifsr.distill.teachers ifsr.eval.evaluate ifsr.exp.ablations
              papermill.engines papermill.iorw nbclient ipykernel.kernelapp ipykernel.ipkernel)

die() { echo "device image check: error: $*" >&2; exit 2; }
specs() { grep -v '^[[:space:]]*\(#\|$\)' "$1"; }
norm() { tr 'A-Z_.' 'a-z--'; }

cache_key() {
    { cat "$IMAGE_LIST" "$WHEEL_LIST"; echo "${ROOTS[*]} $TORCH"; python3 -VV; } | sha256sum | cut -c1-16
}

build_venv() {  # prints the stand-in's folder; builds it when absent
    local base=${DEVICE_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ifsr/device-image}
    local dir="$base/$(cache_key)"
    if [ -f "$dir/.built" ]; then echo "$dir"; return; fi
    mkdir -p "$base"
    local tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    python3 -m venv "$tmp/venv" >&2
    local vpy="$tmp/venv/bin/python" pyver
    pyver=$("$vpy" -c 'import sys; print(sys.version_info >= (3, 12))')
    # the image's versions as constraints, less torch (the CPU build) and, below 3.12, numpy
    specs "$IMAGE_LIST" | grep '==' | grep -v '^torch==' |
        if [ "$pyver" = True ]; then cat; else grep -v '^numpy=='; fi > "$tmp/constraints.txt"
    echo "device image check: building the stand-in in $dir (once per machine and lists)" >&2
    "$vpy" -m pip install -q --upgrade pip >&2
    "$vpy" -m pip install -q "$TORCH" >&2
    "$vpy" -m pip install -q -c "$tmp/constraints.txt" "$TORCH" "${ROOTS[@]}" >&2
    # what the roots pulled in that the image does not hold goes
    local extra
    mapfile -t extra < <(comm -23 <("$vpy" -m pip list --format=freeze | sed 's/==.*//' | norm | sort -u) \
                                  <(specs "$IMAGE_LIST" | sed 's/==.*//' | norm | sort -u))
    if [ "${#extra[@]}" -gt 0 ]; then
        echo "device image check: not in the image, removed: ${extra[*]}" >&2
        "$vpy" -m pip uninstall -q -y "${extra[@]}" >&2
    fi
    mkdir -p "$tmp/wheels"
    mapfile -t w < <(specs "$WHEEL_LIST")
    "$vpy" -m pip download -q --no-deps --only-binary=:all: -d "$tmp/wheels" "${w[@]}" >&2
    [ "$(ls "$tmp/wheels" | wc -l)" -eq "${#w[@]}" ] || die "$WHEEL_LIST names ${#w[@]} wheels, $(ls "$tmp/wheels" | wc -l) came"
    touch "$tmp/.built"
    rm -rf "$dir" && mv "$tmp" "$dir"
    # stand-ins of older lists go (about 1 GiB each)
    find "$base" -mindepth 1 -maxdepth 1 ! -name "$(basename "$dir")" -exec rm -rf {} +
    echo "$dir"
}

imports() {  # $1: a folder of wheels; IMAGE_PY: the python; SITE: where they go (a fresh folder)
    local dir=$1 mods
    [ -n "${IMAGE_PY:-}" ] || die "IMAGE_PY (the stand-in's python) is not set"
    local site=${SITE:-$(mktemp -d)}
    rm -rf "$site"
    SITE=$site PY=$IMAGE_PY bash scripts/gpu_replicate.sh install "$dir" || die "installing the wheels of $dir failed"
    if [ -n "${IMPORTS:-}" ]; then mods=$IMPORTS; else
        mods="$("$IMAGE_PY" - "$dir"/*.whl <<'PY'
import sys, zipfile
tops = set()
for whl in sys.argv[1:]:
    names = zipfile.ZipFile(whl).namelist()
    tl = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if tl:
        tops |= {t.strip() for t in zipfile.ZipFile(whl).read(tl[0]).decode().split() if t.strip()}
    else:
        tops |= {n.split("/")[0].split(".")[0] for n in names
                 if not n.split("/")[0].endswith((".dist-info", ".data")) and (n.endswith(".py") or n.endswith(".so"))}
print(" ".join(sorted(t for t in tops if not t.startswith("_") and t not in ("tests", "test"))))
PY
) ${IFSR_MODULES[*]}"
    fi
    # shellcheck disable=SC2086
    env -u PYTHONHOME PYTHONPATH="$site:$REPO" "$IMAGE_PY" - $mods <<'PY' || exit 2
import importlib, sys
for mod in sys.argv[1:]:
    try:
        importlib.import_module(mod)
    except ImportError as e:
        missing = f"module {e.name!r}" if getattr(e, "name", None) else str(e)
        sys.exit(f"device image check: error: `import {mod}` fails: {missing} is neither in the image "
                 f"(scripts/device_image.txt) nor in the carried wheels (scripts/device_wheels.txt)")
print(f"device image check: {len(sys.argv) - 1} modules import in the stand-in")
PY
}

case "$cmd" in
venv)
    build_venv
    ;;
imports)
    [ -n "${2:-}" ] || die "usage: scripts/device_image_check.sh imports WHEEL_DIR"
    imports "$2"
    ;;
check)
    [ -x "$PY" ] || die "PY=$PY is not the project's python (make install, or set PY)"
    case $PY in /*) ;; *) PY=$REPO/$PY ;; esac
    start=$SECONDS
    dir=$(build_venv)
    export IMAGE_PY=$dir/venv/bin/python
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/device-check.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    SITE=$scratch/site imports "$dir/wheels"
    # a copy of this checkout as it would travel (tracked and untracked-not-ignored files), a repository of its own
    git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$scratch" --one-top-level=repo
    (cd "$scratch/repo" && git init -q && git add -A && git -c user.name=check -c user.email=check@localhost commit -qm check)
    data=${IFSR_DATA_DIR:-$("$PY" -c 'from ifsr.data.beir import find_data_dir; print(find_data_dir()[0])')}
    data=$(cd "$data" && pwd)
    entries=$("$PY" -c 'import yaml; p = yaml.safe_load(open("configs/presets.yaml")); print(" ".join(e for e in p["gpu-quick"] if e in p["smoke"]))')
    echo "device image check: prepare smoke (the project's python), then run smoke in the stand-in: $entries"
    (cd "$scratch/repo" && PY=$PY NO_WHEELS=1 IFSR_DATA_DIR=$data bash scripts/gpu_replicate.sh prepare smoke) \
        > "$scratch/prepare.log" 2>&1 || { tail -20 "$scratch/prepare.log" >&2; die "prepare smoke failed (log above)"; }
    grep -q '"teacher_score_dirs": [1-9]' "$scratch/prepare.log" || die "prepare carried no dense-teacher scores"
    [ -z "$(find "$scratch/repo/.device" -name '*.safetensors')" ] || die "prepare carries model weights: they cannot travel"
    cp "$dir/wheels"/*.whl "$scratch/repo/.device/wheels/"
    rm -rf "$scratch/repo/.cache" "$scratch/repo/runs"  # a bare machine: only what .device/ carries
    mkdir -p "$scratch/out" "$scratch/jupyter"
    (cd "$scratch/repo" && env -u IFSR_DATA_DIR -u PYTHONPATH -u VIRTUAL_ENV PY="$IMAGE_PY" OUT="$scratch/out" \
        SITE="$scratch/site" JUPYTER_DATA_DIR="$scratch/jupyter" ARGS="--only $entries" \
        bash scripts/gpu_replicate.sh run smoke) > "$scratch/run.log" 2>&1 \
        || { tail -30 "$scratch/run.log" >&2; die "run smoke failed in the stand-in (log above)"; }
    grep -q "dense teacher: $scratch/repo/.device/site" "$scratch/out/replicate.log" \
        || die "the run did not resolve the dense teacher to the slim carried copy"
    for e in $entries; do  # each notebook ran there, or was found finished (the baselines, made by prepare)
        grep -Eq "($e\.ipynb done in|skip $e\.ipynb)" "$scratch/out/replicate.log" || die "$e did not run (see the run's log)"
    done
    echo "device image check: passed in $((SECONDS - start)) s (the stand-in: $dir)"
    ;;
*)
    awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2
    exit 2
    ;;
esac
