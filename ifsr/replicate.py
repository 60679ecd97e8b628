"""Batch replication: run every notebook of a preset with papermill into results/<preset>/.

    ifsr replicate --preset smoke            # the whole chain, minutes (CI)
    ifsr replicate --preset cpu              # the real replication on a CPU machine
    ifsr replicate --preset gpu --force      # redo finished results too

Each notebook's parameters come from configs/presets.yaml; they are checked against the notebook's
`parameters` cell (papermill.inspect_notebook) and unknown names are refused before anything runs, as
are unknown keys in a training notebook's config (its YAML, its overrides and `train_overrides`).
A finished result (its manifest.json exists) is not overwritten without `force`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import papermill
import yaml

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


def load_presets(path: str | os.PathLike) -> dict[str, dict[str, dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        presets = yaml.safe_load(f)
    if not isinstance(presets, dict):
        raise ValueError(f"{path}: expected a mapping preset -> notebook -> parameters")
    for preset, notebooks in presets.items():
        for entry in notebooks or {}:
            try:
                entry_parts(entry)
            except ValueError as e:
                raise ValueError(f"{path}: preset {preset!r}: {e}") from None
    return presets


def check_parameters(notebook: str | os.PathLike, params: dict[str, Any]) -> None:
    """Refuse parameters the notebook's `parameters` cell does not declare."""
    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"{notebook}: unknown parameter(s) {unknown}; declared: {sorted(declared)}")


def check_config(root: str | os.PathLike, params: dict[str, Any]) -> None:
    """A training notebook's parameters build its AblationConfig (`config_path`, the overrides, and
    `train_overrides` over the YAML's `train`): an unknown key anywhere is refused before any run."""
    if "config_path" not in params:
        return
    fields = {f.name for f in dataclasses.fields(AblationConfig)}
    load_config(AblationConfig, Path(root) / params["config_path"], train=params.get("train_overrides"),
                **{k: v for k, v in params.items() if k in fields})


def plan(preset: str, root: str | os.PathLike = ".", data_dir: str | None = None,
         only: list[str] | None = None) -> list[tuple[Path, Path, dict[str, Any]]]:
    """(notebook, output directory, parameters) for each notebook of the preset, checked."""
    root = Path(root)
    presets = load_presets(root / "configs" / "presets.yaml")
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(presets)}")
    steps = []
    for entry, params in (presets[preset] or {}).items():
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
    if only and not steps:
        raise ValueError(f"--only {only} matches no notebook of preset {preset!r}")
    return steps


def _record_wall_time(manifest: Path, seconds: float) -> None:
    """The whole notebook's wall time in its manifest (the manifest object itself is made at the end)."""
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        data["wall_seconds"] = round(seconds, 1)
        atomic_write(manifest, json.dumps(data, indent=2).encode("utf-8"))


def replicate(preset: str, root: str | os.PathLike = ".", force: bool = False, data_dir: str | None = None,
              only: list[str] | None = None) -> list[Path]:
    """Execute the preset's notebooks in order; returns the executed notebooks' paths."""
    steps = plan(preset, root, data_dir, only)  # every check before any work
    launch = Path(root) / "results" / preset / "LAUNCH.json"  # the code as it was when the run began
    launch.parent.mkdir(parents=True, exist_ok=True)
    launch.write_text(json.dumps({"git": git_commit(root), "notebooks": [str(n) for n, _, _ in steps]}, indent=1))
    done = []
    for notebook, out_dir, params in steps:
        if (out_dir / "manifest.json").is_file() and not force:
            print(f"skip {notebook.name}: {out_dir}/manifest.json exists (use --force to redo)")
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        executed = out_dir / notebook.name
        print(f"run  {notebook.name} -> {executed}")
        t0 = time.time()
        papermill.execute_notebook(str(notebook), str(executed), parameters=params, cwd=str(Path(root).resolve()),
                                   progress_bar=False, log_output=False)
        _record_wall_time(out_dir / "manifest.json", time.time() - t0)
        done.append(executed)
    write_report(Path(root) / "results", preset)
    return done
