"""The shape of the tree, read with ast: no function in the library over MAX_LINES lines, no arrow that runs
back up (the library importing a front-end, or anything but the CLI importing the CLI), and no module but the
family registry comparing a family's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from promptedit.families import FAMILIES  # imports no torch

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "promptedit"
#: The longest a function or method of src/promptedit may be, from its ``def`` line to its last line.
MAX_LINES = 120
#: The front-ends: they may import the library; the library must not import them.
FRONT_ENDS = ("promptedit.cli", "promptedit.app", "promptedit.demo", "promptedit.batch", "promptedit.serve")
#: The top of the house: only its own modules may import it.
CLI = "promptedit.cli"
#: The one module that may ask which family a model is (issue 30: a new family is one registry entry).
REGISTRY = PACKAGE / "families.py"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _is_front_end(name: str) -> bool:
    return any(_within(name, f) for f in FRONT_ENDS)


def _module_name(path: Path) -> str:
    """promptedit.x.y for a file of the package, benchmarks.z for a benchmark script."""
    base = PACKAGE.parent if path.is_relative_to(PACKAGE) else ROOT
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[ast.stmt, list[str]]]:
    """Each import statement in ``tree``, at any depth (inside functions too), with the absolute module names it
    may import: relative imports resolved against ``module``; ``from X import y`` gives X and X.y (y may be a
    module)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.append((node, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found.append((node, [name] + [f"{name}.{alias.name}" for alias in node.names]))
    return found


def _runs_back_up(importer: str, name: str) -> bool:
    """The library importing a front-end, or a module outside the CLI (batch, the web app, benchmarks/) the CLI."""
    library = _within(importer, "promptedit") and not _is_front_end(importer)
    return (library and _is_front_end(name)) or (_within(name, CLI) and not _within(importer, CLI))


def upward_imports(paths) -> list[str]:
    """'file:line statement' for each import statement in ``paths`` that runs back up."""
    bad = []
    for path in paths:
        module = _module_name(path)
        for node, names in _imports(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py"):
            if any(_runs_back_up(module, name) for name in names):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    return bad


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def long_functions(paths, limit: int = MAX_LINES) -> list[str]:
    """'file:line name is N lines' for each function or method longer than ``limit`` lines."""
    bad = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    bad.append(f"{_shown(path)}:{node.lineno} {node.name} is {length} lines")
    return bad


def family_comparisons(paths, names=tuple(FAMILIES)) -> list[str]:
    """'file:line comparison' for each comparison with a family's name in it (``family == "sdxl"``,
    ``arch in ("sd", "sdxl")``, ``FAMILIES["sd"] is f``)."""
    bad = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value in names
                    for side in (node.left, *node.comparators) for c in ast.walk(side)):
                bad.append(f"{_shown(path)}:{node.lineno} {ast.unparse(node)}")
    return bad


def test_no_function_in_the_library_is_over_the_limit():
    bad = long_functions(sorted(PACKAGE.rglob("*.py")))
    assert not bad, f"over {MAX_LINES} lines (split into named stages):\n" + "\n".join(bad)


def test_no_import_runs_back_up():
    bad = upward_imports(sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")))
    assert not bad, "imports that run back up:\n" + "\n".join(bad)


def test_no_module_but_the_registry_compares_a_family_name():
    bad = family_comparisons(p for p in sorted(PACKAGE.rglob("*.py")) if p != REGISTRY)
    assert not bad, "family branches outside families.py (ask the registry: a Family field):\n" + "\n".join(bad)


def test_the_family_check_finds_what_it_looks_for(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('def f(model, arch):\n    if model.family == "sdxl":\n        return 1\n'
                       '    return arch in ("sd", "other") or FAMILIES["sd"] is arch\n'
                       'def g(model):\n    x = "sd"\n    return model.family == model.text.family, {"sd": x}\n')
    assert family_comparisons([planted]) == ["planted.py:2 model.family == 'sdxl'",
                                             "planted.py:4 arch in ('sd', 'other')",
                                             "planted.py:4 FAMILIES['sd'] is arch"]


def test_the_checks_find_what_they_look_for(tmp_path):
    """Each check flags planted offenders (relative, nested and absolute imports; a long method) and passes clean
    ones, so that a passing run means something."""
    source = ("import os\n"
              "def f():\n    from ..cli import common\n    from .. import demo\n    return common, demo\n"
              "class C:\n    @staticmethod\n    def m():\n" + "        x = 1\n" * 120 + "        return x\n"
              "import promptedit.batch\nfrom .world import bench_masks\n")
    names = [names for _, names in _imports(ast.parse(source), "promptedit.bench.planted", False)]
    assert names == [["os"], ["promptedit.batch"], ["promptedit.bench.world", "promptedit.bench.world.bench_masks"],
                     ["promptedit.cli", "promptedit.cli.common"], ["promptedit", "promptedit.demo"]]
    [(_, init)] = _imports(ast.parse("from .world import x\n"), "promptedit.bench", True)
    assert init[0] == "promptedit.bench.world"
    cases = {("promptedit.bench.world", "promptedit.cli.common"): True,
             ("promptedit.runner", "promptedit.app"): True,
             ("promptedit.batch", "promptedit.cli.edit"): True,
             ("benchmarks.common", "promptedit.cli.common"): True,
             ("promptedit.cli.batch", "promptedit.batch"): False,
             ("promptedit.cli.common", "promptedit.cli"): False,
             ("promptedit.app", "promptedit.methods.editing"): False,
             ("promptedit.bench.world", "promptedit.batching"): False,
             ("benchmarks.common", "promptedit.batch"): False}
    assert {case: _runs_back_up(*case) for case in cases} == cases
    planted, clean = tmp_path / "planted.py", tmp_path / "clean.py"
    planted.write_text(source)
    clean.write_text("def g():\n    return 1\n")
    assert long_functions([planted, clean]) == ["planted.py:8 m is 122 lines"]


def readme_table() -> dict[str, list[str] | None]:
    """The README's module table: each ``promptedit.X`` it names, with the modules it lists in parentheses after
    it (None when it lists none)."""
    import re

    text = (ROOT / "README.md").read_text()
    start = text.index("| stage | package (modules) | what |")
    rows = text[start:text.index("\n\n", start)].splitlines()[2:]
    named: dict[str, list[str] | None] = {}
    for row in rows:
        cell = row.split(" | ")[1]
        for m in re.finditer(r"`promptedit\.(\w+)`( \(((?:[^()]|\([^()]*\))*)\))?", cell):
            listed = None
            if m.group(3) is not None:  # nested lists (a subpackage's modules) name the subpackage only
                listed = re.findall(r"`(\w+)`", re.sub(r"\([^()]*\)", "", m.group(3)))
            named[m.group(1)] = listed
    return named


def test_the_readme_module_table_matches_the_tree():
    named = readme_table()
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert set(named) == top, (f"in the tree, not the table: {sorted(top - set(named))}; "
                               f"in the table, not the tree: {sorted(set(named) - top)}")
    for name, listed in named.items():
        if listed is None:
            continue
        package = PACKAGE / name
        modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | {
            p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
        assert set(listed) == modules, f"promptedit.{name}: the table lists {sorted(listed)}, the tree has {sorted(modules)}"
