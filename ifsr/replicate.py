"""Batch replication: run every notebook of a preset with papermill into results/<preset>/.

    ifsr replicate --preset smoke            # the whole chain, minutes (CI)
    ifsr replicate --preset cpu              # the real replication on a CPU machine
    ifsr replicate --preset gpu --force      # redo finished results too

Each notebook's parameters come from configs/presets.yaml; they are checked against the notebook's
`parameters` cell (papermill.inspect_notebook) and unknown names are refused before anything runs, as
are unknown keys in a training notebook's config (its YAML, its overrides and `train_overrides`), and
`only` names that are not entries of the preset.
A finished result (its manifest.json exists) is not overwritten without `force`; a forced run first
moves the old manifest aside (manifest.previous.json), so a run that fails leaves its folder unfinished.
The data directory, unless given, is found by `ifsr.data.beir.find_data_dir`. Progress: "[i/n]" per notebook with an
estimate from the last run's manifest (wall_seconds), papermill's per-cell bar, and at the end the
paths of the report and of every figure written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import papermill
import yaml

from ifsr.data.beir import IDF_FILE, default_idf_path, find_data_dir
from ifsr.exp.config import AblationConfig, load_config
from ifsr.manifest import atomic_write, git_commit
from ifsr.report.report import write_report

NOTEBOOKS: dict[str, str] = {  # notebook -> results sub-directory
    "00_baselines": "baselines",
    "01_idf_flops": "idf_flops",
    "02_teachers": "teachers",
    "03_latency": "latency",
}


def entry_parts(entry: str) -> tuple[str, str]:
    """A preset entry "03_latency" or "03_latency@student" -> (notebook, results sub-directory).

    "@variant" runs the same notebook again with other parameters into `<folder>_<variant>`."""
    name, _, variant = entry.partition("@")
    if name not in NOTEBOOKS or (variant and not re.fullmatch(r"[a-z0-9_]+", variant)):
        raise ValueError(f"unknown notebook entry {entry!r}; known: {sorted(NOTEBOOKS)} (optionally '@variant')")
    return name, NOTEBOOKS[name] + (f"_{variant}" if variant else "")


def _keys(node: yaml.Node | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A YAML mapping node's keys -> (key node, value node), for line numbers in messages."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): (k, v) for k, v in node.value}


def _line(node: yaml.Node | None) -> str:
    return f"line {node.start_mark.line + 1}: " if node is not None else ""


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def load_presets(path: str | os.PathLike) -> dict[str, dict[str, dict[str, Any]]]:
    """configs/presets.yaml: preset -> notebook entry -> parameters. Every error is one line naming the
    file (and the line, where YAML gives one)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        presets = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path}: {where}YAML syntax error: {problem}") from None
    if not isinstance(presets, dict):
        raise ValueError(f"{path}: expected a mapping preset -> notebook -> parameters, got {_kind(presets)}")
    nodes = _keys(root)
    for preset, notebooks in presets.items():
        key, node = nodes.get(str(preset), (None, None))
        if notebooks is None:
            continue
        if not isinstance(notebooks, dict):
            raise ValueError(f"{path}: {_line(key)}preset {preset!r}: expected a mapping notebook -> parameters "
                             f"(e.g. '00_baselines: {{datasets: [scifact]}}'), got {_kind(notebooks)}")
        entries = _keys(node)
        for entry, params in notebooks.items():
            where = _line(entries.get(str(entry), (None, None))[0])
            try:
                entry_parts(str(entry))
            except ValueError as e:
                raise ValueError(f"{path}: {where}preset {preset!r}: {e}") from None
            if params is not None and not isinstance(params, dict):
                raise ValueError(f"{path}: {where}preset {preset!r}, {entry}: expected a mapping "
                                 f"parameter -> value, got {_kind(params)}")
    return presets


def check_parameters(notebook: str | os.PathLike, params: dict[str, Any]) -> None:
    """Refuse parameters the notebook's `parameters` cell does not declare."""
    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"{notebook}: unknown parameter(s) {unknown}; declared: {sorted(declared)}")


def notebook_config(root: str | os.PathLike, params: dict[str, Any], data_dir: str | None = None) -> AblationConfig | None:
    """A training notebook's AblationConfig, as its parameters build it (`config_path`, the overrides, and
    `train_overrides` over the YAML's `train`); `data_dir` given: it wins over the parameters'. None for a
    notebook without `config_path`. An unknown key anywhere is refused (ValueError)."""
    if "config_path" not in params:
        return None
    fields = {f.name for f in dataclasses.fields(AblationConfig)}
    overrides = {k: v for k, v in params.items() if k in fields}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return load_config(AblationConfig, Path(root) / params["config_path"], train=params.get("train_overrides"),
                       **overrides)


def check_config(root: str | os.PathLike, params: dict[str, Any]) -> None:
    """Refuse, before any run, a training notebook's parameters that do not build its AblationConfig, and a
    latency notebook's levers that would fail only after its main table: a malformed lever, levers without
    lever_engine, a "lambda=" lever without lever_students, or one whose FLOPS weight is not on the
    idf-flops curve of that YAML (which must exist and load), or more lever_seeds than that YAML has seeds."""
    notebook_config(root, params)
    from ifsr.serving.levers import parse_levers

    levers = parse_levers(params.get("levers") or [])
    if levers and not params.get("lever_engine"):
        raise ValueError(f"levers {params['levers']} need lever_engine: the engine setting they are timed on")
    lams = [lever.lam for lever in levers if lever.lam is not None]
    if not lams:
        return
    if not params.get("lever_students"):
        raise ValueError(f"lambda levers {lams} need lever_students: the ablation YAML of their idf-flops students")
    path = Path(root) / params["lever_students"]
    if not path.is_file():
        raise ValueError(f"lever_students {params['lever_students']!r}: no such file under {Path(root).resolve()}")
    cfg = load_config(AblationConfig, path)
    seeds = params.get("lever_seeds", 1)
    if not (isinstance(seeds, int) and not isinstance(seeds, bool) and 1 <= seeds <= len(cfg.seeds)):
        raise ValueError(f"lever_seeds {seeds!r}: an int from 1 to the {len(cfg.seeds)} seeds of {params['lever_students']}")
    for lam in lams:
        try:
            cfg.curve_point("idf-flops", lam)
        except ValueError as e:
            raise ValueError(f"lambda lever {lam} is not on the idf-flops curve of {params['lever_students']}: {e}") from None


def plan(preset: str, root: str | os.PathLike = ".", data_dir: str | None = None,
         only: list[str] | None = None) -> list[tuple[Path, Path, dict[str, Any]]]:
    """(notebook, output directory, parameters) for each notebook of the preset, checked."""
    root = Path(root)
    presets = load_presets(root / "configs" / "presets.yaml")
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(presets)}")
    entries = presets[preset] or {}
    unknown = [name for name in only or [] if name not in entries]
    if unknown:
        raise ValueError(f"--only {' '.join(unknown)}: not an entry of preset {preset!r}; known: {list(entries)}")
    steps = []
    for entry, params in entries.items():
        if only and entry not in only:
            continue
        name, folder = entry_parts(entry)
        out_dir = root / "results" / preset / folder
        params = {"preset": preset, "out_dir": str(out_dir), **(params or {})}
        if data_dir is not None:
            params["data_dir"] = data_dir
        notebook = root / "notebooks" / f"{name}.ipynb"
        check_parameters(notebook, params)
        check_config(root, params)
        steps.append((notebook, out_dir, params))
    return steps


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


def _record_wall_time(manifest: Path, seconds: float) -> None:
    """The whole notebook's wall time in its manifest (the manifest object itself is made at the end)."""
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        data["wall_seconds"] = round(seconds, 1)
        atomic_write(manifest, json.dumps(data, indent=2).encode("utf-8"))


PREVIOUS = "manifest.previous.json"  # a forced run's old manifest, kept aside until the new one is written
FAILED = "manifest.failed.json"      # the manifest of a notebook that failed after writing it


def last_wall_seconds(out_dir: Path) -> float | None:
    """The last run's wall time of this notebook (its manifest, or the one a forced run moved aside)."""
    for name in ("manifest.json", PREVIOUS):
        try:
            seconds = json.loads((out_dir / name).read_text()).get("wall_seconds")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(seconds, (int, float)) and seconds > 0:
            return float(seconds)
    return None


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
            print(f"skip {notebook.name}: {out_dir}/manifest.json exists (use --force to redo)")
        else:
            todo.append((notebook, out_dir, params, last_wall_seconds(out_dir)))
    check_data_dir(data_dir, root, [(notebook, out_dir, params) for notebook, out_dir, params, _ in todo])
    if todo:  # the code as it was when the run began; only when something runs
        launch = Path(root) / "results" / preset / "LAUNCH.json"
        launch.parent.mkdir(parents=True, exist_ok=True)
        launch.write_text(json.dumps({"git": git_commit(root), "notebooks": [str(n) for n, *_ in todo]}, indent=1))
    done, started = [], time.time()
    for i, (notebook, out_dir, params, estimate) in enumerate(todo, 1):
        out_dir.mkdir(parents=True, exist_ok=True)
        if (out_dir / "manifest.json").is_file():  # forced: the folder is unfinished until the new manifest
            os.replace(out_dir / "manifest.json", out_dir / PREVIOUS)
        executed = out_dir / notebook.name
        guess = (f"estimated {duration(estimate)} from the last run's manifest" if estimate is not None
                 else "no estimate: no earlier run's manifest")
        print(f"[{i}/{len(todo)}] {notebook.name} -> {executed} ({guess}; "
              f"{_left([e for *_, e in todo[i - 1:]])} for the preset)", flush=True)
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
        _record_wall_time(out_dir / "manifest.json", time.time() - t0)
        (out_dir / PREVIOUS).unlink(missing_ok=True)
        (out_dir / FAILED).unlink(missing_ok=True)
        done.append(executed)
        print(f"[{i}/{len(todo)}] {notebook.name} done in {duration(time.time() - t0)}; "
              f"{duration(time.time() - started)} elapsed, {_left([e for *_, e in todo[i:]])}", flush=True)
    report = write_report(Path(root) / "results", preset)
    figures = sorted(p for _, out_dir, _, _ in todo for p in out_dir.rglob("*.png") if p.stat().st_mtime >= started)
    print(f"report: {report}")
    print(f"index:  {Path(root) / 'results' / 'REPORT.md'}")
    print("figures:" + ("".join(f"\n  {p}" for p in figures) if figures else " none written by this run"))
    return done
