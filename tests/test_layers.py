"""The package's layering (docs/engine.md, "Module map"): the import graph, read from the code, has no
circle, and no module imports one of a higher layer. Imports inside functions and type-only imports
count as much as any other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import protobench

PACKAGE = Path(protobench.__file__).resolve().parent

#: The layers, lowest first: each is a set of the package's folders (docs/engine.md, "Module map"); a module
#: may import its own layer and the ones below. A module's folder is its layer; the only modules outside
#: every folder are FACE's, the package's face, each named as a layer of its own.
LAYERS: list[set[str]] = [
    {"core"},
    {"methods", "data", "prototypes", "backbones"},
    {"suite"},
    {"store"},
    {"heads"},
    {"engine"},
    {"running"},
    {"reporting"},
    {"api"},
    {"bench"},
    {"cli", "__main__", "__init__"},
]
#: The modules directly in protobench/: the package itself, ``python -m protobench`` and the Python API.
FACE = {"__init__", "__main__", "api"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """The protobench modules ``path`` imports (at the top, inside functions, or for type checking only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from protobench import results` imports the module results; the package itself only when a name
            # it defines is imported (then the name resolves to __init__ below)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
            names |= {node.module} if node.module != "protobench" else set()
    found = set()
    for name in names:
        if name != "protobench" and not name.startswith("protobench."):
            continue
        parts = name.split(".")[1:] or ["__init__"]
        for end in range(len(parts), 0, -1):  # the longest prefix that is a module: `from x import y` may be a name
            if (candidate := ".".join(parts[:end])) in MODULES:
                found.add(candidate)
                break
        else:
            found.add("__init__")
    return found - {module_name(path)}


GRAPH = {name: imported(path) for name, path in MODULES.items()}


def layer_index(name: str) -> int | None:
    """The index in LAYERS of module ``name``'s layer (its folder's, or its own for a module of FACE); None
    for a module directly in protobench/ that is not one of FACE, or in a folder no layer names."""
    folder = name.split(".")[0]
    if "." not in name and not (PACKAGE / folder).is_dir() and name not in FACE:
        return None
    return next((index for index, layer in enumerate(LAYERS) if folder in layer), None)


def layer_of(name: str) -> int:
    index = layer_index(name)
    if index is None:
        raise AssertionError(f"module {name} is in no layer folder: move it into the folder of its layer")
    return index


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in MODULES if layer_index(name) is None)
    assert unplaced == [], f"modules in no layer folder (move each into the folder of its layer): {unplaced}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
                  for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))  # fmt: skip


def circles(graph: dict[str, set[str]]) -> list[str]:
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(" -> ".join(path[path.index(node) :] + [node]))
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    return found


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(GRAPH) == []


def method_data_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a data module by a method (the layers forbid the other way): a method knows no dataset."""
    return sorted(f"{a} imports {b}" for a, targets in graph.items() if a.split(".")[0] == "methods"
                  for b in targets if b.split(".")[0] == "data")  # fmt: skip


def test_methods_import_no_data_module() -> None:
    assert method_data_imports(GRAPH) == []
    assert method_data_imports({**GRAPH, "methods.dnc": GRAPH["methods.dnc"] | {"data.base"}}) == [
        "methods.dnc imports data.base"
    ]


def test_the_import_graph_has_no_circle() -> None:
    assert circles(GRAPH) == []


def test_the_checks_find_a_planted_circle_and_upward_import() -> None:
    # the graph is read from the code
    assert "reporting.comparison" in GRAPH["reporting.report"] and "suite.definition" in GRAPH["running.grid"]
    planted = circles({**GRAPH, "reporting.table": GRAPH["reporting.table"] | {"reporting.report"}})
    assert planted and all("reporting.table -> reporting.report" in circle for circle in planted)
    assert upward_imports({**GRAPH, "store.records": GRAPH["store.records"] | {"engine.loop"}}) == [
        "store.records (layer 3) imports engine.loop (layer 5)"
    ]


def test_a_module_outside_every_layer_folder_has_no_layer() -> None:
    assert layer_index("api") == 8 and layer_index("engine.loop") == 5 and layer_index("running.grid") == 6
    assert layer_index("helpers") is None and layer_index("newfolder.module") is None


def test_modules_stay_readable_and_cite_only_the_repository() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 400, f"{path.relative_to(PACKAGE)} has {len(text.splitlines())} lines"
        # the reference notes outside the repository (method.md, speed.md, style.md); docs/adding-a-method.md is fine
        cited = re.findall(r"(?<![\w-])(?:method|speed|style)\.md|shared/reference", text)
        assert not cited, f"{path.relative_to(PACKAGE)} cites outside docs: {cited}"


#: The engine and running layers, whose loops read top to bottom as short sequences of named phases
#: (docs/engine.md, "One cell: `train_cell`" and "Running a grid").
LOOP_MODULES = sorted(name for name in MODULES if name.split(".")[0] in {"engine", "running"})
#: The most lines a function or method of LOOP_MODULES may have, decorators, docstring and nested functions included.
MAX_FUNCTION_LINES = 60


def long_functions(sources: dict[str, str], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function or method (nested ones too) of ``sources`` (module name -> source) longer than
    ``limit`` lines, as ``module.qualified.name (N lines)``."""
    found = []

    def visit(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno, *(decorator.lineno for decorator in child.decorator_list)])
                length = (child.end_lineno or child.lineno) - first + 1
                if length > limit:
                    found.append(f"{module}.{prefix}{child.name} ({length} lines)")
                visit(child, module, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, module, f"{prefix}{child.name}.")
            else:  # functions under an if, a try or a with
                visit(child, module, prefix)

    for module, source in sources.items():
        visit(ast.parse(source), module, "")
    return sorted(found)


LOOP_SOURCES = {name: MODULES[name].read_text() for name in LOOP_MODULES}


def test_loops_read_top_to_bottom() -> None:
    assert long_functions(LOOP_SOURCES) == [], f"split these into named phases of at most {MAX_FUNCTION_LINES} lines"


def test_the_check_finds_a_planted_long_function() -> None:
    planted = "\n\nclass Planted:\n    @staticmethod\n    def phase() -> None:\n" + "        pass\n" * 59
    assert long_functions({**LOOP_SOURCES, "running.runner": LOOP_SOURCES["running.runner"] + planted}) == [
        "running.runner.Planted.phase (61 lines)"
    ]
    assert long_functions({"engine.loop": "def short() -> None:\n" + "    pass\n" * 59}) == []
