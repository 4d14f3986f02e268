"""Orchestration reads as a list of steps: no function in the package runs over 80 lines (style.md).

A function's length counts from its first decorator to its last line, docstring and comments
included, so a long one cannot pass by moving lines into its docstring."""
import ast
from pathlib import Path

import scalenas

MAX_LINES = 80
SRC = Path(scalenas.__file__).parent


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """(lines, "path:line name") of every function and method under ``root``, nested ones included."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                out.append((node.end_lineno - first + 1, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return out


def test_no_function_over_80_lines():
    lengths = function_lengths(SRC)
    assert len(lengths) > 500  # the walk found the package's functions
    too_long = sorted((n, where) for n, where in lengths if n > MAX_LINES)
    assert not too_long, "functions over 80 lines; name their stages: " + "; ".join(
        f"{where} ({n} lines)" for n, where in too_long)


def test_the_count_includes_decorators_and_docstrings(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 3))
    (tmp_path / "m.py").write_text(f'@staticmethod\ndef f():\n    """doc\n    more"""\n{body}\n')
    assert function_lengths(tmp_path) == [(MAX_LINES + 1, "m.py:2 f")]
