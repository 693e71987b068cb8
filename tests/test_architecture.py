"""docs/architecture.md stays true: every module of the package is in its table, and every import between them points
up the table (to the same or an earlier layer), with no loop."""

import ast
import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gendd_hf"
ROW = re.compile(r"^\| (\d+) [^|]+\| `([\w.]+)` \|", re.MULTILINE)


def documented_layers() -> dict[str, int]:
    return {name: int(layer) for layer, name in ROW.findall((ROOT / "docs" / "architecture.md").read_text())}


def imports_of(path: Path, root: Path) -> set[str]:
    """The modules below `root` (dotted, relative to it) that the file at `path` imports, anywhere in the file."""
    parts = path.relative_to(root).with_suffix("").parts
    package = list(parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = [*package[: len(package) - (node.level - 1)], *(node.module.split(".") if node.module else [])]
            names = [[alias.name] for alias in node.names] if node.module is None else [[]]
            found.update(".".join(base + name) for name in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gendd_hf."):
            found.add(node.module.removeprefix("gendd_hf."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("gendd_hf.") for a in node.names if a.name.startswith("gendd_hf."))
    return {module for module in found if module}


def unit_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Imports between the table's units (a top-level module or package of `root`), without self-imports. The
    package's own `__init__` re-exports from every layer and is left out."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts == ("__init__",):
            continue
        graph.setdefault(parts[0], set()).update(target.split(".")[0] for target in imports_of(path, root))
    return {source: targets - {source} for source, targets in graph.items()}


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    return sorted(
        f"{source} (layer {layers[source]}) imports {target} (layer {layers[target]})"
        for source, targets in graph.items()
        for target in targets
        if layers[target] > layers[source]
    )


def find_loop(graph: dict[str, set[str]]) -> list[str] | None:
    done, path = set(), []

    def visit(unit):
        if unit in path:
            return [*path[path.index(unit) :], unit]
        if unit in done:
            return None
        path.append(unit)
        loop = next((found for target in sorted(graph.get(unit, ())) if (found := visit(target))), None)
        path.pop()
        done.add(unit)
        return loop

    return next((found for unit in sorted(graph) if (found := visit(unit))), None)


def test_every_module_is_documented_and_every_documented_module_exists():
    assert set(unit_graph()) == set(documented_layers())


def test_imports_point_up_the_table_only():
    assert upward_imports(unit_graph(), documented_layers()) == []


def test_no_import_loop():
    assert find_loop(unit_graph()) is None


def test_the_checks_find_an_upward_import_and_a_loop(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("from .loading import load_split\n")
    (tmp_path / "data" / "loading.py").write_text("def f():\n    from ..trainer import GenDDTrainer\n")
    (tmp_path / "trainer.py").write_text("from .data import load_split\nfrom gendd_hf.metrics import top1\n")
    graph = unit_graph(tmp_path)
    assert graph == {"data": {"trainer"}, "trainer": {"data", "metrics"}}
    assert upward_imports(graph, {"data": 4, "trainer": 5, "metrics": 4}) == [
        "data (layer 4) imports trainer (layer 5)"
    ]
    assert find_loop(graph) == ["data", "trainer", "data"]
