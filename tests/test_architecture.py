"""The layout of the package, read from its source: small functions, no import cycles, every
import pointing down the layers, subpackages entered through their surface, process settings in
one module, and a top-level `__init__` that only re-exports."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jaxode"
MAX_FUNCTION_LINES = 80

# Lowest first: a module may import from its own layer and the layers below it.
LAYERS = (
    (
        "jaxode._files",
        "jaxode._locks",
        "jaxode._memory_limit",
        "jaxode._process",
        "jaxode._version",
        "jaxode._wording",
        "jaxode._provenance",
        "jaxode._uncertainty",
    ),
    (
        "jaxode._bases",
        "jaxode._layers",
        "jaxode._projection",
        "jaxode._fields",
        "jaxode._paradigms",
        "jaxode._models",
        "jaxode._surrogate",
        "jaxode._counting",
        "jaxode._trajectories",
    ),
    ("jaxode._datasets",),
    ("jaxode._training",),
    (
        "jaxode._probes",
        "jaxode._sweeps",
        "jaxode._runs_table",
        "jaxode._sensitivity",
        "jaxode._tracking",
    ),
    (
        "jaxode._cli",
        "jaxode._ensemble_cli",
        "jaxode._sensitivity_cli",
        "jaxode.__main__",
        "jaxode.probes",
        "jaxode",
    ),
)
SUBPACKAGES = ("jaxode._datasets", "jaxode._training", "jaxode._probes", "jaxode._sweeps")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def _imports(name: str) -> list[tuple[str, str, int]]:
    """`(imported module, imported name, line)` of every import of a jaxode module inside
    module `name`, at any depth (imports inside functions count too)."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                as_module = f"{target}.{alias.name}"
                if as_module in MODULES:
                    found.append((as_module, "", node.lineno))
                elif target in MODULES:
                    found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name in MODULES]
    return found


def _layer(name: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in members):
            return rank
    raise AssertionError(f"{name} is in no layer of LAYERS; add it")


def _subpackage(name: str) -> str | None:
    return next((p for p in SUBPACKAGES if name == p or name.startswith(p + ".")), None)


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_is_longer_than_80_lines_without_its_docstring():
    long = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{node.name} ({_body_lines(node)} lines)"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and _body_lines(node) > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_import_graph_has_no_cycle():
    graph = {name: {target for target, _, _ in _imports(name) if target != name} for name in TREES}
    # Package surfaces are entered from outside; their own re-exports are no cycle.
    graph = {n: {t for t in targets if not n.startswith(t + ".")} for n, targets in graph.items()}
    state, cycles = {}, []

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_every_import_points_down_the_layers():
    upward = [
        f"{name} (line {line}) imports {target}"
        for name in TREES
        for target, _, line in _imports(name)
        if _layer(target) > _layer(name)
    ]
    assert upward == []


def test_subpackages_are_entered_through_their_surface():
    reaching = []
    for name in TREES:
        for target, imported, line in _imports(name):
            home, there = _subpackage(name), _subpackage(target)
            if there is None or home == there or name == "jaxode.probes":
                continue
            if target != there:
                reaching.append(f"{name} (line {line}) imports {target}")
            elif imported.startswith("_") and not imported.startswith("__"):
                reaching.append(f"{name} (line {line}) imports {there}.{imported}")
    assert reaching == []


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{name} (line {line}) imports {target}.{imported}"
        for name in TREES
        for target, imported, line in _imports(name)
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert private == []


def test_only_the_process_module_changes_jax_settings():
    changing = sorted(
        {
            name
            for name, tree in TREES.items()
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr == "update"
            and ast.unparse(node.value) == "jax.config"
        }
    )
    assert changing == ["jaxode._process"]


@pytest.mark.parametrize("name", ["jaxode", "jaxode.probes"])
def test_the_public_surface_only_re_exports(name):
    tree = TREES[name]
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    # A closing `__all__ = [names]` lists the re-exports; it computes nothing.
    last = body[-1] if body else None
    if isinstance(last, ast.Assign) and [ast.unparse(t) for t in last.targets] == ["__all__"]:
        assert isinstance(last.value, ast.List)
        names = last.value.elts
        assert all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in names)
        body = body[:-1]
    assert all(isinstance(node, ast.ImportFrom) for node in body)
    for node in body:
        assert node.level == 1 and all(a.asname == a.name for a in node.names)
