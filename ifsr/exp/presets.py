"""A preset's plan: configs/presets.yaml (preset -> notebook entry -> parameters) read and checked, each training
notebook's AblationConfig built as the notebook builds it, and `plan`: (notebook, output directory, parameters) for
each entry, checked before anything runs. Every error is one line naming the file. The batch runner
(`ifsr.replicate`) runs the plan; the device plan (`ifsr.exp.work`) and carry (`ifsr.exp.carry`) read it.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import papermill
import yaml

from ifsr.core.names import IDF_ARM
from ifsr.exp.config import AblationConfig, load_config


NOTEBOOKS: dict[str, str] = {  # notebook -> results sub-directory
    "00_baselines": "baselines",
    "01_teachers": "teachers",
    "02_idf_flops": "idf_flops",
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
    from ifsr.exp.levers import parse_levers

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
            cfg.curve_point(IDF_ARM, lam)
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
