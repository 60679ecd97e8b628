"""Imports flow one way: pyproject.toml's import-linter contracts (the layers, lowest last, and no import circle
among the modules of any package) hold for ifsr, and they fail on a copy of the package given an upward import or a
circle, each made inside a function (imports inside functions count). import-linter comes with the test extras."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def lint(root: Path) -> subprocess.CompletedProcess:
    """The contracts of root/pyproject.toml over root/ifsr, in a fresh process (root first on its path)."""
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "", "PYTHONDONTWRITEBYTECODE": "1"})


def test_the_package_keeps_its_layers():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package and its pyproject.toml, with a function importing `line` added to `module`."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "ifsr", tmp_path / "ifsr", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n\ndef _added():\n    {line}\n")
    return tmp_path


def test_an_upward_import_breaks_the_layers(tmp_path):
    out = lint(copy_with(tmp_path, "ifsr.core.names", "from ifsr.report.claims import verdict"))
    assert out.returncode == 1
    assert "ifsr.core.names -> ifsr.report.claims" in out.stdout  # the layers contract names the import
    assert "infrastructure BROKEN" in out.stdout


def test_a_circle_inside_a_layer_is_refused(tmp_path):
    """The latency config importing the lever study that reads it: the circle issue 30 broke."""
    out = lint(copy_with(tmp_path, "ifsr.exp.config", "from ifsr.exp.levers import parse_levers"))
    assert out.returncode == 1
    assert "No cycles are allowed in ifsr.exp." in out.stdout and "1 kept, 1 broken" in out.stdout
