"""Sizes that read in one sitting (issue 30): a module of more than MODULE_LINES lines says why in a
'# Over 300 lines: ...' line right under its docstring, a function of more than FUNCTION_LINES lines in a
'# Over 60 lines: ...' line right under its own; the check fails on a long function without one."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_LINES, FUNCTION_LINES = 300, 60


def unexplained(path: Path) -> list[str]:
    """What in one module is long without its reason line."""
    text = path.read_text(encoding="utf-8")
    lines, tree, found = text.split("\n"), ast.parse(text), []
    doc = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) else None
    if len(lines) > MODULE_LINES and not (doc and lines[doc.end_lineno].startswith("# Over 300 lines: ")):
        found.append(f"{path.name}: {len(lines)} lines")
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > FUNCTION_LINES:
            first = f.body[0]
            after = first.end_lineno if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                else f.body[0].lineno - 1
            if not lines[after].strip().startswith("# Over 60 lines: "):
                found.append(f"{path.name}:{f.lineno} {f.name}: {f.end_lineno - f.lineno + 1} lines")
    return found


def test_every_long_module_and_function_says_why():
    found = [x for p in sorted((ROOT / "ifsr").rglob("*.py")) for x in unexplained(p)]
    assert not found, found


def test_a_long_function_without_its_reason_fails(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES + 1))
    path = tmp_path / "m.py"
    path.write_text(f'"""A module."""\n\n\ndef f():\n    """Long."""\n{body}\n')
    assert unexplained(path) == [f"m.py:4 f: {FUNCTION_LINES + 3} lines"]
    path.write_text(f'"""A module."""\n\n\ndef f():\n    """Long."""\n    # Over 60 lines: a test.\n{body}\n')
    assert unexplained(path) == []
    path.write_text('"""A module."""\n' + "x = 1\n" * MODULE_LINES)
    assert unexplained(path) == [f"m.py: {MODULE_LINES + 2} lines"]
