"""The package's import graph: no cycle, and no module importing another module's private names.

Every import statement counts, those inside functions too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mahacompress"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of a mahacompress module in `path`."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mahacompress":
                continue
            modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{target}.{n}" in modules]
            found += [(f"{target}.{n}", []) for n in submodules]
            found.append((target, [n for n in names if n not in submodules]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "mahacompress"]
    return found


def _graph() -> dict[str, list[tuple[str, list[str]]]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_no_private_names_imported_from_another_module():
    bad = [
        f"{importer} imports {name} from {module}" for importer, imports in _graph().items()
        for module, names in imports for name in names if name.startswith("_") and module != importer
    ]
    assert not bad, bad


def test_no_import_cycle():
    graph = {m: sorted({t for t, _ in imports if t != m}) for m, imports in _graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


# The pipeline's stages in order: a module may import its own stage and earlier ones, never a later one
STAGES = ("core", "data", "models", "infer", "train", "measure", "deploy", "study", "report", "search", "cli")


def _stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def test_every_module_lives_in_a_stage_and_imports_no_later_stage():
    graph = _graph()
    loose = [m for m in graph if _stage(m) is None and m not in ("mahacompress", "mahacompress.__main__")]
    assert not loose, f"modules outside the stage packages {STAGES}: {loose}"
    backwards = [
        f"{importer} ({STAGES[_stage(importer)]}) imports {module} ({STAGES[_stage(module)]})"
        for importer, imports in graph.items() if _stage(importer) is not None for module, _ in imports
        if _stage(module) is not None and _stage(module) > _stage(importer)
    ]
    assert not backwards, backwards


def test_each_stage_says_what_it_owns_and_may_import():
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "Imports" in doc, stage


def _declared_distributions() -> set[str]:
    """Distributions pyproject.toml declares: its dependencies and every optional extra, names normalised."""
    import re
    import tomllib

    project = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_normalised(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requirements}


def _normalised(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_declared_distribution():
    """A module the package imports (at the top or lazily) must come from a distribution pyproject.toml names
    (a dependency or an extra): a package present only as another one's dependency can vanish with that one's
    next release. The files copied into exported folders (runtime.py, serve.py as server.py) and the modelling
    files saved beside weights are package files, so they count too; serve.py's `import runtime` is its
    neighbour in an exported folder."""
    import sys
    from importlib.metadata import packages_distributions

    ours = {p.stem for p in PACKAGE.rglob("*.py")} | {"mahacompress"}
    provided = packages_distributions()
    declared = _declared_distributions()
    missing = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            for module in (m.split(".")[0] for m in modules):
                if module in sys.stdlib_module_names or module in ours or module == "__future__":
                    continue
                # a module not installed here (an extra left out) is looked up under its own name
                if not {_normalised(d) for d in provided.get(module, [module])} & declared:
                    missing.add(f"{path.relative_to(PACKAGE)}: {module} ({', '.join(provided.get(module, ['?']))})")
    assert not missing, sorted(missing)


TESTS = Path(__file__).resolve().parent


def _private_patches(source: str) -> list[str]:
    """`owner._name` for every private name of mahacompress that `source` replaces: `monkeypatch.setattr` /
    `delattr` (or the builtins) on a mahacompress module or object, a "mahacompress.x._name" string target, or
    an assignment to such an attribute. A mahacompress object is a name an import of mahacompress bound."""
    tree = ast.parse(source)
    ours = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mahacompress" and not node.level:
            ours |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            ours |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] == "mahacompress"}

    def is_ours(expr: ast.expr) -> bool:
        while isinstance(expr, ast.Attribute):
            expr = expr.value
        return isinstance(expr, ast.Name) and expr.id in ours

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name not in ("setattr", "delattr") or not node.args:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):  # "mahacompress.core.files._x"
                if first.value.startswith("mahacompress.") and any(private(p) for p in first.value.split(".")):
                    found.append(first.value)
            elif (len(node.args) > 1 and is_ours(first) and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and private(node.args[1].value)):
                found.append(f"{ast.unparse(first)}.{node.args[1].value}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(t, ast.Attribute) and private(t.attr) and is_ours(t.value):
                        found.append(ast.unparse(t))
    return found


def test_no_test_patches_a_private_name_of_mahacompress():
    """Tests replace public seams only (a private name is free to change without a test knowing it): a test that
    needs to replace something patches a public name of mahacompress or the library function it calls."""
    example = ("import mahacompress.core.files as files\nfrom mahacompress.train import loop\n"
               "def test(monkeypatch):\n    monkeypatch.setattr(loop, '_x', 1)\n"
               "    monkeypatch.setattr('mahacompress.core.files._y', 1)\n    loop._z = 2\n"
               "    monkeypatch.setattr(files, 'write_json', 1)\n    monkeypatch.setattr(loop.torch, 'save', 1)\n")
    assert sorted(_private_patches(example)) == ["loop._x", "loop._z", "mahacompress.core.files._y"]
    found = {(path.name, target)
             for path in sorted(TESTS.glob("*.py"))
             for target in _private_patches(path.read_text(encoding="utf-8"))}
    assert not found, f"patch a public name instead: {sorted(found)}"
