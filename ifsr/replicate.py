"""Batch replication: run every notebook of a preset with papermill into results/<preset>/.

    ifsr replicate --preset smoke            # the whole chain, minutes (CI)
    ifsr replicate --preset cpu              # the real replication on a CPU machine
    ifsr replicate --preset gpu --force      # redo finished results too

Each notebook's parameters come from configs/presets.yaml; they are checked against the notebook's
`parameters` cell (papermill.inspect_notebook; the plan: `ifsr.exp.presets.plan`) and unknown names are refused before anything runs, as
are unknown keys in a training notebook's config (its YAML, its overrides and `train_overrides`), and
`only` names that are not entries of the preset.
A finished result (its manifest.json exists) is not overwritten without `force`, unless it is stale: a training
notebook whose folder's config.yaml trains other stages or evaluates otherwise than the preset now resolves, or a
latency folder measured with other settings or other "lambda=" students than the preset now resolves
(`stale_reason`), runs again, and says why. A forced (or stale) run first moves the old manifest aside
(manifest.previous.json), so a run that fails leaves its folder unfinished.
The data directory, unless given, is found by `ifsr.data.beir.find_data_dir`. Progress: "[i/n]" per notebook with an
estimate from the earlier runs' manifest (wall_seconds; the longest on record, wall_seconds_longest, when a
warm rerun was much quicker than a cold run), papermill's per-cell bar, and at the end the
paths of the report and of every figure written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import papermill

from ifsr.data.beir import IDF_FILE, default_idf_path, find_data_dir
from ifsr.core.names import IDF_ARM
from ifsr.exp.config import AblationConfig, LatencyConfig, load_config
from ifsr.exp.presets import notebook_config, plan
from ifsr.manifest import atomic_write, git_commit
from ifsr.report.report import write_report
from ifsr.tables import read_table


def reads_default_idf(root: str | os.PathLike, params: dict[str, Any]) -> bool:
    """Whether a notebook reads the data directory's MS MARCO IDF table (IDF_FILE): every notebook does,
    except a training notebook whose config names its own idf_path."""
    cfg = notebook_config(root, params)
    return cfg is None or cfg.idf_path is None


def check_data_dir(data_dir: str, root: str | os.PathLike, steps: list[tuple[Path, Path, dict[str, Any]]]) -> None:
    """Before any notebook runs: the data directory holds what the notebooks to run read and cannot fetch by
    name, the IDF table (a BEIR set is downloaded by name when online; the IDF table is not)."""
    readers = [notebook.stem for notebook, _, params in steps if reads_default_idf(root, params)]
    if not readers:
        return
    if not Path(data_dir).is_dir():
        raise ValueError(f"data directory {data_dir}: no such directory; expected one holding beir/, idf/, pairs/ "
                         f"(--data-dir, else $IFSR_DATA_DIR, ../shared/data or ./data)")
    if not default_idf_path(data_dir).is_file():
        raise ValueError(f"data directory {data_dir}: no {IDF_FILE} (the MS MARCO IDF table {', '.join(readers)} "
                         f"read); expected a data directory holding beir/, idf/, pairs/")


def _record_wall_time(manifest: Path, seconds: float, longest_before: float | None = None) -> None:
    """The whole notebook's wall time in its manifest (the manifest object itself is made at the end), and the
    longest on record (`wall_seconds_longest`: a run that reused cached runs is quicker than a cold one)."""
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        data["wall_seconds"] = round(seconds, 1)
        data["wall_seconds_longest"] = round(max(seconds, longest_before or 0.0), 1)
        atomic_write(manifest, json.dumps(data, indent=2).encode("utf-8"))


# The AblationConfig fields a finished folder is checked on besides its training stages: how it was evaluated.
EVAL_FIELDS = ("eval_split", "eval_max_length", "headline_lambda")


def drop_widget_state(executed: Path) -> None:
    """Remove the executed notebook's saved widget state (`metadata.widgets`: the progress bars' live models, most of
    a cold training notebook's size, 3.3 of 4.5 MB); every output keeps its text/plain form. Written atomically."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=nbformat.NO_CONVERT)
    if nb.metadata.pop("widgets", None) is not None:
        atomic_write(Path(executed), nbformat.writes(nb).encode("utf-8"))


def stale_reason(root: str | os.PathLike, notebook: Path, out_dir: Path, params: dict[str, Any],
                 data_dir: str | None = None) -> str | None:
    """Why a finished notebook's results no longer answer its preset: a training notebook's folder config.yaml
    trains other stages (the run keys' config parts, `ifsr.exp.work._train_stages`: a changed step count, lambda,
    seed list, ...) or sets an EVAL_FIELDS value otherwise than the preset resolves now; a latency folder as
    `latency_stale_reason` says. None when they match, for the baselines notebook, and for a folder without
    config.yaml (nothing to compare)."""
    from ifsr.exp.work import _train_stages

    cfg = notebook_config(root, params, data_dir)
    path = out_dir / "config.yaml"
    if not path.is_file():
        return None
    if cfg is None:
        return latency_stale_reason(root, out_dir, params, data_dir) if notebook.stem == LATENCY else None
    try:
        old = load_config(AblationConfig, path, data_dir=data_dir)
    except ValueError as e:
        return f"its config.yaml no longer loads ({e})"
    changed = [f for f in EVAL_FIELDS if getattr(old, f) != getattr(cfg, f)]
    if _train_stages(old, notebook.stem) != _train_stages(cfg, notebook.stem):
        changed.insert(0, "the training stages")
    return f"not what {params['config_path']} resolves now: {', '.join(changed)}" if changed else None


LATENCY = "03_latency"  # the notebook whose folders `latency_stale_reason` checks
WHERE_FIELDS = ("data_dir", "cache_dir")  # LatencyConfig fields that say where, not what: never make a folder stale


def latency_stale_reason(root: str | os.PathLike, out_dir: Path, params: dict[str, Any],
                         data_dir: str | None = None) -> str | None:
    """Why a finished latency folder no longer answers its preset entry: its config.yaml sets a LatencyConfig
    field otherwise than the entry's parameters now resolve (where it reads and caches aside), or its "lambda="
    levers timed other students than the lever_students YAML's runs now are (their run keys, `sweep_key`,
    against the run directories in the model column of levers/table.csv). None when both match."""
    from ifsr.exp.ablations import sweep_key
    from ifsr.exp.latency import model_from_curve
    from ifsr.exp.levers import lever_models, parse_levers

    try:
        old = load_config(LatencyConfig, out_dir / "config.yaml")
    except ValueError as e:
        return f"its config.yaml no longer loads ({e})"
    names = [f.name for f in dataclasses.fields(LatencyConfig)]
    given = {k: v for k, v in params.items() if k in names}
    if params.get("model_from"):
        given["model"] = model_from_curve(params["model_from"])
    now = load_config(LatencyConfig, **given)
    changed = [f"{f} ({_short(getattr(old, f))} -> {_short(getattr(now, f))})" for f in names
               if f not in WHERE_FIELDS and getattr(old, f) != getattr(now, f)]
    if changed:
        return f"not what its preset entry resolves now: {', '.join(changed)}"
    table = read_table(out_dir / "levers" / "table.csv")
    lams = sorted({lever.lam for lever in parse_levers(old.levers) if lever.lam is not None})
    if not lams or table is None:
        return None
    timed = {Path(m).parent.name for m in lever_models(table)}  # a student's run directory is named by its key
    try:
        cfg = load_config(AblationConfig, Path(root) / old.lever_students,
                          **({"data_dir": data_dir} if data_dir is not None else {}))
        other = [f"lambda={lam} seed {seed}" for lam in lams for seed in cfg.seeds[:max(old.lever_seeds, 1)]
                 if sweep_key(cfg, IDF_ARM, lam, seed) not in timed]
    except (OSError, ValueError) as e:  # the YAML, its data or a lambda are gone: what it timed cannot be checked
        return f"its students cannot be keyed now ({e})"
    return f"its students are not the runs {old.lever_students} resolves now: {', '.join(other)}" if other else None


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


PREVIOUS = "manifest.previous.json"  # a forced run's old manifest, kept aside until the new one is written
FAILED = "manifest.failed.json"      # the manifest of a notebook that failed after writing it


def wall_times(out_dir: Path) -> tuple[float, float] | None:
    """(last, longest) wall seconds of this notebook's runs on record (its manifest, or the one a forced run moved
    aside); None without one. A manifest from before `wall_seconds_longest` counts its last run as the longest."""
    for name in ("manifest.json", PREVIOUS):
        try:
            data = json.loads((out_dir / name).read_text())
            last, longest = data.get("wall_seconds"), data.get("wall_seconds_longest")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(last, (int, float)) and last > 0:
            longest = longest if isinstance(longest, (int, float)) and longest >= last else last
            return float(last), float(longest)
    return None


def _estimate(times: tuple[float, float] | None) -> str:
    if times is None:
        return "no estimate: no earlier run's manifest"
    last, longest = times
    if longest <= 1.5 * last:
        return f"estimated {duration(last)} from the last run's manifest"
    return f"estimated up to {duration(longest)}, the longest run on record (the last took {duration(last)})"


def duration(seconds: float) -> str:
    """12s, 3m05s, 2h07m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _left(estimates: list[float | None]) -> str:
    known = [e for e in estimates if e is not None]
    if not estimates:
        return "nothing left"
    unknown = len(estimates) - len(known)
    text = f"~{duration(sum(known))} left" if known else "time left unknown"
    if known and unknown:
        text += f" (+{unknown} notebook(s) never run before)"
    return text


def replicate(preset: str, root: str | os.PathLike = ".", force: bool = False, data_dir: str | None = None,
              only: list[str] | None = None) -> list[Path]:
    """Execute the preset's notebooks in order; returns the executed notebooks' paths."""
    if data_dir is None:
        found, why = find_data_dir(root)
        data_dir = str(found)
        print(f"data: {found} ({why})")
    steps = plan(preset, root, data_dir, only)  # every check before any work
    todo = []
    for notebook, out_dir, params in steps:
        if (out_dir / "manifest.json").is_file() and not force:
            why = stale_reason(root, notebook, out_dir, params, data_dir)
            if why is None:
                print(f"skip {notebook.name}: {out_dir}/manifest.json exists (use --force to redo)")
                continue
            print(f"stale {notebook.name}: {why}; it runs again")
        todo.append((notebook, out_dir, params, wall_times(out_dir)))
    check_data_dir(data_dir, root, [(notebook, out_dir, params) for notebook, out_dir, params, _ in todo])
    if todo:  # the code as it was when the run began; only when something runs
        launch = Path(root) / "results" / preset / "LAUNCH.json"
        launch.parent.mkdir(parents=True, exist_ok=True)
        launch.write_text(json.dumps({"git": git_commit(root), "notebooks": [str(n) for n, *_ in todo]}, indent=1))
    done, started = [], time.time()
    for i, (notebook, out_dir, params, times) in enumerate(todo, 1):
        out_dir.mkdir(parents=True, exist_ok=True)
        if (out_dir / "manifest.json").is_file():  # forced: the folder is unfinished until the new manifest
            os.replace(out_dir / "manifest.json", out_dir / PREVIOUS)
        executed = out_dir / notebook.name
        print(f"[{i}/{len(todo)}] {notebook.name} -> {executed} ({_estimate(times)}; "
              f"{_left([t and t[1] for *_, t in todo[i - 1:]])} for the preset)", flush=True)
        t0 = time.time()
        try:
            papermill.execute_notebook(str(notebook), str(executed), parameters=params,
                                       cwd=str(Path(root).resolve()), progress_bar=True, log_output=False)
        except BaseException:  # a manifest the notebook wrote before it failed does not mark it finished
            if (out_dir / "manifest.json").is_file():
                os.replace(out_dir / "manifest.json", out_dir / FAILED)
            print(f"[{i}/{len(todo)}] {notebook.name} failed after {duration(time.time() - t0)}: see {executed} "
                  f"({out_dir} is left unfinished: no manifest.json)", file=sys.stderr, flush=True)
            raise
        _record_wall_time(out_dir / "manifest.json", time.time() - t0, times and times[1])
        drop_widget_state(executed)
        (out_dir / PREVIOUS).unlink(missing_ok=True)
        (out_dir / FAILED).unlink(missing_ok=True)
        done.append(executed)
        print(f"[{i}/{len(todo)}] {notebook.name} done in {duration(time.time() - t0)}; "
              f"{duration(time.time() - started)} elapsed, {_left([t and t[1] for *_, t in todo[i:]])}", flush=True)
    report = write_report(Path(root) / "results", preset)
    figures = sorted(p for _, out_dir, _, _ in todo for p in out_dir.rglob("*.png") if p.stat().st_mtime >= started)
    print(f"report: {report}")
    print(f"index:  {Path(root) / 'results' / 'REPORT.md'}")
    print("figures:" + ("".join(f"\n  {p}" for p in figures) if figures else " none written by this run"))
    return done
