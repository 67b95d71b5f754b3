"""The package's floors: no module imports, directly or through others, a module that imports it back.

Read from the source with ``ast`` (imports inside functions count too, so a circle cannot hide in a
late import). Packages count as their ``__init__``; ``from . import x`` counts as importing ``x``.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dlcourse"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set) -> set:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


def import_graph() -> dict:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    # a subpackage's __init__ re-exports its modules: importing them from inside is not a circle
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    assert "dlcourse.samplers.ddim" in graph and graph["dlcourse.samplers.ddim"], "the reader found no imports"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_formula_floors_do_not_import_the_floors_above():
    graph = import_graph()
    upward = {"dlcourse.guidance": ("dlcourse.samplers", "dlcourse.metrics", "dlcourse.training", "dlcourse.widgets"),
              "dlcourse.parameterization": ("dlcourse.samplers", "dlcourse.training", "dlcourse.widgets"),
              "dlcourse.schedules": ("dlcourse.forward", "dlcourse.samplers", "dlcourse.widgets")}
    for module, above in upward.items():
        bad = [t for t in graph[module] if t.startswith(above)]
        assert not bad, f"{module} imports {bad} from a floor above it"
