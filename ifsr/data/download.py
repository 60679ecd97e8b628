"""Where a BEIR set comes from when it is named, not given as a directory: ``<data_dir>/beir/<name>``, or
the official zip (md5 checked), downloaded only where nothing of that set exists yet.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# Official md5 of each BEIR zip, from the md5 column of the dataset table in the BEIR README
# (github.com/beir-cellar/beir).
BEIR_MD5: dict[str, str] = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}
# Official sets whose zip holds one BEIR set per sub-directory, loaded as "<set>/<subset>".
BEIR_SUBSETS: dict[str, tuple[str, ...]] = {
    "cqadupstack": ("android", "english", "gaming", "gis", "mathematica", "physics", "programmers",
                    "stats", "tex", "unix", "webmasters", "wordpress"),
}


def download_beir(name: str, root: Path) -> None:
    """Fetch the official zip of ``name`` into ``root``, check its md5 and unzip it there."""
    url = BEIR_URL.format(name=name)
    if name not in BEIR_MD5:
        raise FileNotFoundError(f"BEIR set {name!r} not found under {root} and it is not an official "
                                f"download (no md5 known; official: {sorted(BEIR_MD5)}); url would be {url}")
    root.mkdir(parents=True, exist_ok=True)
    zpath = root / f"{name}.zip.part"
    try:
        fetch(url, zpath)
    except OSError as e:  # URLError, HTTPError, timeouts are all OSError
        zpath.unlink(missing_ok=True)
        raise FileNotFoundError(f"BEIR set {name!r} not found in {root / name} and download of "
                                f"{url} failed: {e}") from e
    md5 = hashlib.md5(zpath.read_bytes()).hexdigest()
    if md5 != BEIR_MD5[name]:
        zpath.unlink(missing_ok=True)
        raise ValueError(f"md5 mismatch for {url}: got {md5}, expected {BEIR_MD5[name]}")
    with zipfile.ZipFile(zpath) as z:
        for member in z.namelist():  # refuse paths escaping root
            if member.startswith("/") or ".." in Path(member).parts:
                raise ValueError(f"unsafe path {member!r} in {url}")
        z.extractall(root)
    zpath.unlink()


def fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (the one network call of this module; tests replace it)."""
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f)


def looks_like_path(name: str) -> bool:
    """A --data value that names a directory, not a set: it starts with ".", "~" or is absolute, or it
    has a path separator and its first part is a directory relative to the working directory
    ("sets/doesnotexist" with ./sets present; "cqadupstack/android" is a set name unless ./cqadupstack is)."""
    if os.path.isabs(name) or name.startswith((".", "~")):
        return True
    seps = "/" + (os.sep if os.sep != "/" else "") + (os.altsep or "")
    if not any(c in name for c in seps):
        return False
    first = Path(name).parts[0]
    return os.path.isdir(first)


def resolve_name(name: str, beir_root: Path, download: bool) -> Path:
    """``<beir_root>/<name>``, downloading the official zip of its top set first if that is absent.

    Never downloads into an existing ``<beir_root>/<top>``: a set there that lacks the named subset (or
    its corpus.jsonl) is an error, not a reason to unzip over it.
    """
    root = beir_root / name
    if (root / "corpus.jsonl").is_file():
        return root
    top, _, subset = name.replace(os.sep, "/").partition("/")
    top_dir = beir_root / top
    url = BEIR_URL.format(name=top)
    if subset and top_dir.is_dir():
        there = sorted(p.name for p in top_dir.iterdir() if (p / "corpus.jsonl").is_file())
        raise FileNotFoundError(f"BEIR set {name!r} not found: {top_dir} exists but has no {subset!r} with a "
                                f"corpus.jsonl (subsets there: {there}); nothing downloaded")
    if not subset and top in BEIR_SUBSETS:
        raise FileNotFoundError(f"BEIR set {name!r} is split into subsets: name one, as {top}/<subset> with "
                                f"<subset> one of {list(BEIR_SUBSETS[top])}")
    if top_dir.is_dir():
        raise FileNotFoundError(f"BEIR set {name!r} is incomplete: {root} exists but has no corpus.jsonl; "
                                f"nothing downloaded over it (remove the directory to fetch {url} again)")
    if subset and top in BEIR_MD5 and subset.split("/")[0] not in BEIR_SUBSETS.get(top, ()):
        known = BEIR_SUBSETS.get(top)
        raise FileNotFoundError(f"BEIR set {name!r} not found: {top!r} " + (
            f"has the subsets {list(known)}" if known else "has no subsets") + "; nothing downloaded")
    if not download:
        raise FileNotFoundError(f"no BEIR set in {root} (download disabled; url: {url})")
    download_beir(top, beir_root)
    if not (root / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"no corpus.jsonl in {root} after downloading {url}")
    return root
