"""Imports flow one way (docs/design.md): every module of ``src/scalenas`` is read with ``ast`` and each
of its imports, top-level or inside a function, is mapped to the layer it reaches. An import from a
layer into a later-listed one fails, naming the file, the line and the edge.

    errors, utils, config -> space -> nets -> data -> viz -> tasks -> train -> search -> deploy -> study -> demo -> cli
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass


SRC = os.path.join(os.path.dirname(__file__), os.pardir, "src")
PACKAGE = "scalenas"
# Lowest first; the names in one tuple form one layer and may import each other.
LAYERS = [("errors", "utils", "config"), ("space",), ("nets",), ("data",), ("viz",), ("tasks",), ("train",),
          ("search",), ("deploy",), ("study",), ("demo",), ("cli",)]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
# Pydantic config bases belong to the config layer: a task's or a search's schema that takes its base
# from ``train.config`` ties that schema to training (the search one is not a back-up edge by rank).
CONFIG_BASES = {"Strict"}

@dataclass(frozen=True)
class Edge:
    path: str  # relative to src/, e.g. "scalenas/deploy/extract.py"
    line: int
    target: str  # the module imported, e.g. "scalenas.cli._target"
    names: tuple[str, ...]  # what a ``from`` import takes
    in_function: bool

    @property
    def module(self) -> str:
        parts = self.path[:-3].split("/")
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def __str__(self):
        where = " (inside a function)" if self.in_function else ""
        return f"{self.path}:{self.line}: {self.module} -> {self.target}{where}"


def layer_of(module: str) -> str | None:
    """``scalenas.nets.supernet`` -> ``nets``; the bare package -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _absolute(path: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module
    package = path[:-3].split("/")[:-1]  # an __init__ resolves against its own package too
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_target(node: ast.Call) -> str | None:
    """``importlib.import_module("scalenas.x.y")`` or ``(f"scalenas.x.{name}")``: the literal part."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        arg = arg.values[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.rstrip(".")
    return None


def imports_of(path: str, text: str) -> list[Edge]:
    """Every import of a ``scalenas`` module in one file, with the line and whether it sits in a function."""
    edges: list[Edge] = []

    def visit(node: ast.AST, in_function: bool):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        targets: list[tuple[str, tuple[str, ...]]] = []
        if isinstance(node, ast.Import):
            targets = [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute(path, node)
            names = tuple(a.name for a in node.names)
            # ``from scalenas import nets`` and ``from . import heads`` reach the submodule
            sub = mod == PACKAGE or node.module is None
            targets = [(f"{mod}.{n}", ()) for n in names] if sub else [(mod, names)]
        elif isinstance(node, ast.Call) and _dynamic_target(node):
            targets = [(_dynamic_target(node), ())]
        for target, names in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                edges.append(Edge(path, node.lineno, target, names, in_function))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(ast.parse(text, filename=path), False)
    return edges


def back_up(edge: Edge) -> str | None:
    """Why ``edge`` breaks the one direction, or None."""
    src, dst = layer_of(edge.module), layer_of(edge.target)
    for layer, mod in ((src, edge.module), (dst, edge.target)):
        if layer is not None and layer not in RANK:
            return f"{mod}: layer {layer!r} is not in the layer order of tests/test_layers.py (docs/design.md)"
    if src is not None and dst is not None and RANK[dst] > RANK[src]:
        return f"{src} imports the later layer {dst}"
    if CONFIG_BASES & set(edge.names) and edge.target != f"{PACKAGE}.config":
        return f"config base {sorted(CONFIG_BASES & set(edge.names))} not taken from {PACKAGE}.config"
    return None


def module_paths() -> list[str]:
    """Every ``.py`` file of the package, relative to ``src/``."""
    out = []
    for root, dirs, files in os.walk(os.path.join(SRC, PACKAGE)):
        dirs.sort()
        out += [os.path.relpath(os.path.join(root, f), SRC).replace(os.sep, "/") for f in sorted(files)
                if f.endswith(".py")]
    return out


def all_edges() -> list[Edge]:
    edges = []
    for rel in module_paths():
        with open(os.path.join(SRC, rel), encoding="utf-8") as fh:
            edges += imports_of(rel, fh.read())
    return edges


def violations(edges: list[Edge]) -> list[str]:
    return [f"{e}: {why}" for e in edges if (why := back_up(e))]


def test_imports_flow_one_way():
    assert len(module_paths()) > 80  # the walk found the package
    edges = all_edges()
    bad = violations(edges)
    assert not bad, "imports from a later layer into an earlier one:\n" + "\n".join(bad)


# ---- the checker itself ---------------------------------------------------------------------------
def test_checker_names_file_line_and_edge_of_a_function_level_import():
    text = "import torch\n\n\ndef f():\n    from scalenas.cli._target import parse_hw\n    return parse_hw\n"
    (edge,) = imports_of("scalenas/deploy/extract.py", text)
    assert (edge.line, edge.in_function) == (5, True)
    assert violations([edge]) == ["scalenas/deploy/extract.py:5: scalenas.deploy.extract -> scalenas.cli._target "
                                  "(inside a function): deploy imports the later layer cli"]


def test_checker_resolves_relative_package_and_dynamic_imports():
    text = ("from . import heads\nfrom ..train.engine import x\nfrom scalenas import search\n"
            "import importlib\nimportlib.import_module(f'scalenas.demo.{name}')\n")
    targets = [e.target for e in imports_of("scalenas/nets/__init__.py", text)]
    assert targets == ["scalenas.nets.heads", "scalenas.train.engine", "scalenas.search", "scalenas.demo"]
    why = [v.rsplit(": ", 1)[1] for v in violations(imports_of("scalenas/nets/__init__.py", text))]
    assert why == [f"nets imports the later layer {x}" for x in ("train", "search", "demo")]


def test_checker_allows_downward_and_same_layer_and_flags_config_bases_and_unknown_layers():
    ok = ("from scalenas.errors import ScaleNASError\nfrom scalenas.nets.supernet import S\n"
          "from scalenas.config import Strict\n")
    assert violations(imports_of("scalenas/train/engine.py", ok)) == []
    assert violations(imports_of("scalenas/utils/io.py", "from scalenas.config import x\n")) == []
    base = violations(imports_of("scalenas/search/config.py", "from scalenas.train.config import Strict\n"))
    assert base == ["scalenas/search/config.py:1: scalenas.search.config -> scalenas.train.config: "
                    "config base ['Strict'] not taken from scalenas.config"]
    (unknown,) = violations(imports_of("scalenas/benchmarks/run.py", "from scalenas.search import x\n"))
    assert "layer 'benchmarks' is not in the layer order" in unknown
