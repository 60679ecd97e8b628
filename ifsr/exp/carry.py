"""What a device call carries besides the code: the preset's inputs, made small enough to travel (64 MiB).

The dense teacher's weights (all-MiniLM-L6-v2, 87 MiB) cannot travel. Its package goes as a slim copy
(`slim_model_package`: same checksum, no weights), and everything the preset asks of
it is computed here first, with the same code and keys: its scores of the training candidates
(`ifsr.distill.teachers.score_candidates`, both stages) go in `cache/teacher_scores/`, and the baselines
notebook (whose dense rows encode whole corpora) runs here into results/<preset>/baselines, which the
device run then finds finished. A step that still needs the weights there fails with a FileNotFoundError
naming the model, never silently.

    python -m ifsr.exp.carry PRESET DEST [--data-dir D]     # DEST/site, DEST/cache (scripts/gpu_replicate.sh)
"""
from __future__ import annotations

import argparse
import json
import shutil
import os
import sys
from pathlib import Path

from ifsr.exp.config import AblationConfig
from ifsr.manifest import slim_copy
from ifsr.models import OFFLINE_MODELS, resolve_model_path

SLIM_MODELS = ("all-MiniLM-L6-v2",)  # offline models that travel without their weights


def slim_model_package(name: str, site: str | os.PathLike, leave_out: tuple[str, ...] = ("model.safetensors",)) -> Path:
    """Copy the package behind an offline model into the folder `site` (for sys.path) without its weights:
    `ifsr.manifest.slim_copy` lists them with their sha256, so the model's checksum, and every cache and
    run key made from it, stays the same; only the model's cached outputs can be used there (the device carry)."""
    if name not in OFFLINE_MODELS:
        raise ValueError(f"{name!r} is not an offline model; known: {sorted(OFFLINE_MODELS)}")
    module, folder = OFFLINE_MODELS[name]
    src = Path(resolve_model_path(name)).parent
    dst = Path(site) / module
    shutil.copytree(src, dst, ignore=lambda d, names: [folder] if Path(d) == src else
                    [n for n in names if n == "__pycache__"])
    slim_copy(src / folder, dst / folder, list(leave_out))
    return Path(site)


def preset_configs(preset: str, root: str | Path = ".", data_dir: str | None = None) -> list[AblationConfig]:
    """The distinct training configs of a preset's notebooks, as the runner builds them."""
    from ifsr.exp.presets import load_presets, notebook_config

    presets = load_presets(Path(root) / "configs" / "presets.yaml")
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(presets)}")
    out: list[AblationConfig] = []
    for params in presets[preset].values():
        cfg = notebook_config(root, params, data_dir)
        if cfg is not None and cfg not in out:
            out.append(cfg)
    return out


def teacher_score_dirs(cfg: AblationConfig, models: tuple[str, ...] = SLIM_MODELS) -> list[Path]:
    """Score both stages' training candidates with the teachers in `models` only (what travels; the device scores
    with the others itself), with the teacher objects and keys the training sets use (cached; a no-op when
    done), and return those cache folders."""
    from ifsr.exp.trainsets import build_teachers, finetune_candidates, pretrain_candidates
    from ifsr.distill.teachers import score_candidates
    from ifsr.exp.runs import has_pretraining

    teachers = [t for t in build_teachers(cfg) if t.name in models]
    sets = [finetune_candidates(cfg)] + ([pretrain_candidates(cfg)] if has_pretraining(cfg) else [])
    wanted = {(t.name, t.checksum) for t in teachers}
    for cands, doc_text, dataset in sets:
        for t in teachers:
            score_candidates(t, cands, doc_text, cfg.cache_dir, dataset)
    datasets = {name for _, _, name in sets}
    out = []
    for key_file in sorted((Path(cfg.cache_dir) / "teacher_scores").glob("*/key.json")):
        key = json.loads(key_file.read_text())
        if (key.get("teacher"), key.get("weights")) in wanted and key.get("dataset") in datasets \
                and key.get("max_length") == cfg.teacher_max_length:
            out.append(key_file.parent)
    return out


def trim_pairs(configs: list[AblationConfig], dest: str | Path) -> int:
    """DEST/<file>.jsonl.gz: only the pre-training pairs the configs draw (ifsr.exp.trainsets.pretrain_pairs),
    each in the file it came from, in the drawn order: read there, they give the same pairs, hence the same
    candidates and cache keys, at a fraction of the bytes. Returns the pairs written; 0 (nothing written) when
    the configs draw different pairs or none (the whole folder must travel then)."""
    import gzip

    from ifsr.data.beir import data_dir
    from ifsr.data.pairs import load_pairs
    from ifsr.exp.trainsets import pretrain_pairs
    from ifsr.exp.runs import has_pretraining

    drawn = {tuple(pretrain_pairs(cfg)) for cfg in configs if has_pretraining(cfg)}
    if len(drawn) != 1:
        return 0
    (pairs,) = drawn
    src = data_dir(configs[0].data_dir) / "pairs"
    Path(dest).mkdir(parents=True, exist_ok=True)
    left = set(pairs)
    for path in sorted(src.glob("*.jsonl.gz")):
        here = set(load_pairs(src, sources=[path.name[: -len(".jsonl.gz")]])) & left
        if here:
            with gzip.open(Path(dest) / path.name, "wt", encoding="utf-8") as f:
                for p in pairs:
                    if p in here:
                        f.write(json.dumps({"query": p.query, "positive": p.positive, "source": p.source}) + "\n")
            left -= here
    return len(pairs)


def prepare(preset: str, dest: str | Path, data_dir: str | None = None, root: str | Path = ".") -> dict[str, int]:
    """DEST/site: slim copies of SLIM_MODELS' packages; DEST/cache/teacher_scores: their cached scores;
    DEST/pairs: the pre-training pairs the preset draws (`trim_pairs`; absent: the whole folder travels)."""
    dest = Path(dest)
    configs = preset_configs(preset, root, data_dir)  # every check before anything is written
    for sub in ("site", "cache", "pairs"):
        if (dest / sub).exists():
            shutil.rmtree(dest / sub)
    for m in SLIM_MODELS:
        slim_model_package(m, dest / "site")
    dirs = sorted({d for cfg in configs for d in teacher_score_dirs(cfg)})
    for d in dirs:
        shutil.copytree(d, dest / "cache" / "teacher_scores" / d.name)
    return {"slim_models": len(SLIM_MODELS), "teacher_score_dirs": len(dirs),
            "pretrain_pairs": trim_pairs(configs, dest / "pairs")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ifsr.exp.carry", description=__doc__.splitlines()[0])
    ap.add_argument("preset")
    ap.add_argument("dest")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    try:
        print(json.dumps(prepare(args.preset, args.dest, args.data_dir)))
    except (ValueError, FileNotFoundError) as e:
        print(f"carry: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
