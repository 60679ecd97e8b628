"""The device-image check (scripts/device_image_check.sh, run whole by `make test`): its import step fails, with one
line naming the missing module, when a wheel a carried package needs is left out, and passes when it is carried;
the carried-wheel list is one list of pinned names that the device script reads."""
import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "device_image_check.sh"


def _wheel(folder: Path, name: str, code: str) -> Path:
    """A minimal pure-python wheel: package `name` whose __init__ runs `code`."""
    dist = f"{name}-0.1.dist-info"
    files = {f"{name}/__init__.py": code, f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}/top_level.txt": f"{name}\n"}
    record = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
                     f"{len(t.encode())}\n" for p, t in files.items()) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, t in {**files, f"{dist}/RECORD": record}.items():
            z.writestr(p, t)
    return path


def _imports(wheels: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGE_PY": sys.executable, "SITE": str(tmp_path / "site")}
    env.pop("IMPORTS", None)
    return subprocess.run(["bash", str(CHECK), "imports", str(wheels)], env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_import_step_fails_when_a_needed_wheel_is_left_out(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "ifsrfakepapermill", "import ifsrfakeentrypoints\n")  # needs a package nobody carries
    res = _imports(wheels, tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    line = "device image check: error: `import ifsrfakepapermill` fails: module 'ifsrfakeentrypoints' is neither"
    assert line in res.stderr and "Traceback" not in res.stderr
    _wheel(wheels, "ifsrfakeentrypoints", "")
    res = _imports(wheels, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"device image check: \d+ modules import in the stand-in", res.stdout)


def test_the_carried_wheels_are_one_pinned_list_that_the_device_script_reads():
    lines = [s.strip() for s in (ROOT / "scripts" / "device_wheels.txt").read_text().splitlines()]
    specs = [s for s in lines if s and not s.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9_.+-]*", s) for s in specs), specs
    norm = lambda s: re.sub(r"[-_.]+", "-", s.split("==")[0]).lower()  # noqa: E731
    names = [norm(s) for s in specs]
    assert len(names) == len(set(names))
    # papermill's and ipykernel's own needs (issue 28's first failure)
    assert {"papermill", "entrypoints", "ipykernel", "nest-asyncio2"} <= set(names)
    image = {norm(s): s.split("==")[1] if "==" in s else None
             for s in map(str.strip, (ROOT / "scripts" / "device_image.txt").read_text().splitlines())
             if s and not s.startswith("#")}
    for s in specs:  # carried only where the image lacks it or holds another version
        assert image.get(norm(s), "absent") != s.split("==")[1], f"{s} is the image's own version"
    script = (ROOT / "scripts" / "gpu_replicate.sh").read_text()
    assert "scripts/device_wheels.txt" in script and "entrypoints" not in script
