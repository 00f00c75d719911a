"""The direction of imports, read from the source with `ast` (module-level and function-level imports).

The library never imports `cli/`; `pose_extract/` never imports `piumr_skel/`; the `piumr_skel`
modules form no import cycle; no subpackage imports from a layer above its own, nor an `engine/`
module from one above its own (LAYERS and INNER_LAYERS below, the same lists as
docs/ARCHITECTURE.md). A new subpackage or engine module gets a layer here, or this test names it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("piumr_skel", "pose_extract", "cli")

# Lowest first. A unit may import from its own layer and the layers below it. The units are the
# subpackages of piumr_skel/ (a subpackage counts as one unit); within a subpackage named in
# INNER_LAYERS, its modules are layered the same way.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("skeleton",),          # layouts, graph
    ("data",),              # labels, splits, transforms, the clip cache and dataset
    ("method",),            # TFAM, GIRL: the Recognizer and the RGB variant plug TFAM in
    ("models", "rgb"),      # backbones and the Recognizer; the RGB variant
    ("engine",),            # config, run data, builders, objective, checkpoints, train, evaluate
    ("tools",),             # ablations, comparisons, fusion, demo, importers, drawing, synthetic data
)
INNER_LAYERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "engine": (
        ("atomic", "metrics", "plots"),                          # all-or-nothing writes, scores, figures
        ("config", "data_setup", "losses", "runguard"),          # a run's description
        ("averaging", "build", "checkpoint", "runtime"),         # building and running a model
        ("evaluate",),
        ("train",),
    ),
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement anywhere in the file, relative ones
    resolved; `from pkg import sub` counts as an import of the submodule when sub is one."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                target = ".".join(package[: len(package) - node.level + 1] + ([target] if target else []))
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            found += [(s, node.lineno) for s in subs]
            if len(subs) < len(node.names):
                found.append((target, node.lineno))
    return found


def _project_imports() -> dict[str, list[tuple[str, int]]]:
    """Module -> (project module it imports, line), each target resolved to the module that exists."""
    graph = {}
    for name, path in MODULES.items():
        edges = []
        for target, line in _imports(name, path):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.append((target, line))
        graph[name] = edges
    return graph


GRAPH = _project_imports()


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def _offending(importer_pkg: str, imported_pkg: str) -> list[str]:
    return [f"{_where(m, line)} imports {t}" for m, edges in GRAPH.items() if m.split(".")[0] == importer_pkg
            for t, line in edges if t.split(".")[0] == imported_pkg]


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with a stack of the path)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_library_never_imports_cli() -> None:
    bad = _offending("piumr_skel", "cli") + _offending("pose_extract", "cli")
    assert not bad, "cli/ is only parsed options calling the library:\n" + "\n".join(bad)


def test_pose_extract_never_imports_piumr_skel() -> None:
    bad = _offending("pose_extract", "piumr_skel")
    assert not bad, "video -> keypoints must not depend on the recognition library:\n" + "\n".join(bad)


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_no_import_cycle_among_piumr_skel_modules() -> None:
    graph = {m: [t for t, _ in edges if t.startswith("piumr_skel.")]
             for m, edges in GRAPH.items() if m.startswith("piumr_skel.")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _layer_check(layers: tuple[tuple[str, ...], ...], unit_of, inside) -> list[str]:
    """Problems among the modules for which inside(module) holds, each belonging to the unit
    unit_of(module): units without a layer, layer entries without a unit, upward imports."""
    layer = {unit: i for i, units in enumerate(layers) for unit in units}
    units = {unit_of(m) for m in MODULES if inside(m)}
    problems = [f"units without a layer: {sorted(units - set(layer))}"] if units - set(layer) else []
    problems += [f"layer entries that name no unit: {sorted(set(layer) - units)}"] if set(layer) - units else []
    problems += [f"{_where(m, line)}: {m} (layer {layer[unit_of(m)]}) imports {t} (layer {layer[unit_of(t)]})"
                 for m, edges in GRAPH.items() if inside(m) and unit_of(m) in layer
                 for t, line in edges if inside(t) and unit_of(t) in layer
                 and layer[unit_of(t)] > layer[unit_of(m)]]
    return problems


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    problems = _layer_check(LAYERS, lambda m: m.split(".")[1], lambda m: m.startswith("piumr_skel."))
    assert not problems, "LAYERS of piumr_skel:\n" + "\n".join(problems)


def test_no_import_from_a_lower_layer_to_a_higher_one_inside_a_subpackage() -> None:
    problems = []
    for package, layers in INNER_LAYERS.items():
        prefix = f"piumr_skel.{package}."
        problems += _layer_check(layers, lambda m: m.split(".")[2], lambda m, p=prefix: m.startswith(p))
    assert not problems, "INNER_LAYERS:\n" + "\n".join(problems)
