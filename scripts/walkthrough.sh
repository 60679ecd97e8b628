#!/usr/bin/env bash
# The README's "Train your own" walk-through, run exactly as written and timed command by command.
#
#   scripts/walkthrough.sh            cold: in a fresh copy of this checkout's HEAD (git archive), so no trained
#                                     model, cached encoding or my/ of an earlier run is reused
#   scripts/walkthrough.sh --here     in this checkout (my/, runs/, .cache/ are git-ignored; warm if run before)
#
# The commands are read from README.md's bash block under "## Train your own" (never a copy of them), and each is
# run in one bash shell (so MODEL=... carries over) under bash's `time`. Every line, its time and the total go to
# stdout and to <dir>/my/walkthrough.log. Needs `ifsr` on PATH (the README's install, e.g. PATH=.venv/bin:$PATH);
# IFSR_DATA_DIR, when unset, is the data directory `ifsr` itself would find for this checkout
# (ifsr.data.beir.find_data_dir). PYTHONPATH is set to the directory run in, so its `ifsr` package is the one run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "${1:-}" in
  "") dir=$(mktemp -d "${TMPDIR:-/tmp}/ifsr-walkthrough.XXXXXX")
      git -C "$repo" archive HEAD | tar -x -C "$dir" ;;
  --here) dir=$repo
          [ ! -e "$dir/my" ] || { echo "$0: $dir/my exists (an earlier walk-through's outputs, which the README's" \
                                       "commands refuse to overwrite); remove it first" >&2; exit 2; } ;;
  *) echo "usage: $0 [--here]" >&2; exit 2 ;;
esac
command -v ifsr >/dev/null || { echo "$0: no ifsr on PATH (install it, or PATH=<venv>/bin:\$PATH)" >&2; exit 2; }
python=$(head -1 "$(command -v ifsr)" | sed 's/^#!//')  # the interpreter of the installed `ifsr`
export PYTHONPATH=$dir
if [ -z "${IFSR_DATA_DIR:-}" ]; then
  IFSR_DATA_DIR=$(cd "$repo" && "$python" -c 'from ifsr.data.beir import find_data_dir; print(find_data_dir(".")[0])')
fi
export IFSR_DATA_DIR
cd "$dir"
package=$("$python" -c 'import ifsr, os; print(os.path.dirname(ifsr.__file__))')
[ "$package" = "$dir/ifsr" ] || { echo "$0: ifsr imports from $package, not $dir/ifsr" >&2; exit 2; }

# README.md: the first ```bash block after "## Train your own"; comment and blank lines dropped.
mapfile -t commands < <(awk '/^## Train your own/ {s = 1} s && /^```bash/ {b = 1; next} b && /^```/ {exit}
                              b && !/^[[:space:]]*(#|$)/' README.md)
[ ${#commands[@]} -gt 0 ] || { echo "$0: no bash block under '## Train your own' in README.md" >&2; exit 2; }

log=$dir/my/walkthrough.log  # my/: the walk-through's own (git-ignored) output folder
times=$(mktemp)
trap 'rm -f "$times"' EXIT
mkdir -p "$dir/my"
echo "walk-through in $dir (git $(git -C "$repo" rev-parse --short HEAD), IFSR_DATA_DIR=$IFSR_DATA_DIR)" | tee "$log"
exec 3>&2
start=$(date +%s)
for line in "${commands[@]}"; do
  echo "\$ $line" | tee -a "$log"
  TIMEFORMAT="[%1R s wall, %1U s user] ${line//%/%%}"
  { time eval "$line" 2>&3; } 2>"$times"  # the command's own stderr to the terminal, the time to $times
  tee -a "$log" <"$times"
done
echo "total: $(( $(date +%s) - start )) s for ${#commands[@]} commands" | tee -a "$log"
