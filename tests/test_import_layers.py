"""The layout of ``utils`` (docs/LAYOUT.md): layers that import only downwards, no import cycle,
and imports at the top of a module unless a comment on the line says why it is lazy."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[1] / "utils"

#: Which parts of ``utils`` each part may import (besides itself). A part is a subpackage, or a
#: top-level module. The order of this dict is the order of the layers, from the ground up.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data": {"core"},
    "plotting": {"core"},
    "notebook": {"core", "plotting"},
    "models": {"core", "data"},
    "assess": {"core", "data", "models"},
    "explainers": {"core", "data", "models", "assess", "plotting"},
    "studies": {"core", "data", "models", "assess", "explainers", "plotting"},
    "course": {"core", "data", "models", "assess", "explainers", "studies", "plotting",
               "notebook"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(UTILS.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported utils module, line, at module level)`` of every import in ``path``."""
    tree = ast.parse(path.read_text())
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
            targets = [n for n in names if _is_module(n)] or [base]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            if target == "utils" or target.startswith("utils."):
                found.append((target, node.lineno, id(node) in top))
    return found


def _is_module(name: str) -> bool:
    path = UTILS.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


FILES = sorted(p for p in UTILS.rglob("*.py") if "release_template" not in p.parts)


def test_every_part_is_known():
    assert {_part(_module_name(p)) for p in FILES} - {"utils"} == set(ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(UTILS.parent)))
def test_imports_only_downwards(path):
    me = _part(_module_name(path))
    if me == "utils":
        return
    wrong = [(t, line) for t, line, _ in _imports(path)
             if _part(t) != me and _part(t) not in ALLOWED[me]]
    assert not wrong, f"{me} may import only {sorted(ALLOWED[me])}; found {wrong}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(UTILS.parent)))
def test_lazy_imports_say_why(path):
    lines = path.read_text().splitlines()
    silent = [line for _, line, top in _imports(path)
              if not top and "lazy" not in lines[line - 1]]
    assert not silent, f"imports inside functions without a '# lazy: why' comment: lines {silent}"


def test_no_import_cycle():
    """No cycle among the modules of utils, counting every import (lazy ones too)."""
    graph = {_module_name(p): {t for t, _, _ in _imports(p)} - {_module_name(p)} for p in FILES}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail + [node, nxt]))
            if nxt in graph and state.get(nxt) is None:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [])


def _layout_tree() -> dict[str, int]:
    """``{utils/... .py: line count}`` as docs/LAYOUT.md's tree lists them (packages too, as
    ``utils/<package>/``)."""
    text = (UTILS.parent / "docs" / "LAYOUT.md").read_text()
    tree: dict[str, int] = {}
    package = None
    for line in text.split("```")[1].splitlines():
        m = re.match(r"^( {2}| {4})(\S+?)(/?)\s+(\d+)", line)
        if not m:
            continue
        indent, name, slash, count = m.groups()
        if slash:
            package = name
            tree[f"utils/{name}/"] = int(count)
        elif indent == "  ":
            tree[f"utils/{name}"] = int(count)
        else:
            tree[f"utils/{package}/{name}"] = int(count)
    return tree


def test_layout_doc_lists_every_module_with_about_its_size():
    """docs/LAYOUT.md is the newcomer's map: every module of ``utils`` is in it (and nothing
    that is gone), each line count within 15 % of ``wc -l`` (refresh them when a module grows)."""
    tree = _layout_tree()
    # the modules themselves (``wc -l utils/*.py utils/*/*.py``), not templates deeper down
    files = {p: len(p.read_text().splitlines())
             for p in [*UTILS.glob("*.py"), *UTILS.glob("*/*.py")]}
    actual = {p.relative_to(UTILS.parent).as_posix(): n for p, n in files.items()
              if p.name != "__init__.py"}
    for package in {p.parent for p in files if p.parent != UTILS}:
        actual[f"utils/{package.name}/"] = sum(n for p, n in files.items() if p.parent == package)
    assert sorted(set(actual) - set(tree)) == [], "modules missing from docs/LAYOUT.md"
    assert sorted(set(tree) - set(actual)) == [], "docs/LAYOUT.md lists modules that are gone"
    stale = {name: (tree[name], n) for name, n in actual.items()
             if abs(tree[name] - n) > 0.15 * n + 5}
    assert stale == {}, "line counts in docs/LAYOUT.md (listed, actual)"
