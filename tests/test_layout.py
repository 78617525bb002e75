"""The package's structure: one place for each concept, and modules that talk through public names."""

import ast
import graphlib
from pathlib import Path

import dhrd

SOURCE = Path(dhrd.__file__).parent
MODULES = {p.stem for p in SOURCE.rglob("*.py")} | {p.name for p in SOURCE.iterdir() if p.is_dir()}


def _trees():
    for path in sorted(SOURCE.rglob("*.py")):
        yield path.relative_to(SOURCE), ast.parse(path.read_text())


def test_no_private_names_cross_modules():
    found = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                found += [f"{path}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in MODULES:
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    found.append(f"{path}: {node.value.id}.{node.attr}")
    assert not found


def test_no_module_imports_the_package_init():
    """The version is read one way (``provenance.dhrd_version``); modules import modules, never ``dhrd``."""
    found = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                found += [f"{path}: from . import {a.name}" for a in node.names if a.name not in MODULES]
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "dhrd":
                found.append(f"{path}: from dhrd import ...")
            if isinstance(node, ast.Import) and any(a.name == "dhrd" for a in node.names):
                found.append(f"{path}: import dhrd")
    assert not found


def test_training_saves_the_reasoning_head_through_modeling():
    imported = {
        node.module or ""
        for path in (SOURCE / "training").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
    }
    assert not [name for name in imported if name.split(".")[-1] == "explain"]


def test_plot_colours_live_in_one_place():
    holders = sorted(str(path) for path, tree in _trees() if "tab:" in ast.unparse(tree))
    assert holders == ["runtime.py"]


# A module past this many lines holds more than one concept; none is excused. After the splits of issue 27 the
# largest that stay whole are cot.baseline (~535 lines) and data.inputs (~515).
MOST_LINES = 550


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, tree: ast.Module, top_level_only: bool, run_time_only: bool = False) -> set[str]:
    """The dhrd modules a module imports (``a.b`` names relative to ``dhrd``): all of them; with ``run_time_only``
    all but those in ``if TYPE_CHECKING:`` and ``__main__`` blocks; or only those its import runs at once
    (``top_level_only``: module-level statements, not under ``if TYPE_CHECKING``, not inside functions)."""
    name = _module_name(path)
    package = (name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]) if name else []
    nodes = tree.body if top_level_only else list(_walk_run_time(tree) if run_time_only else ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = [*base, *(node.module.split(".") if node.module else [])]
            whole = ".".join(target)
            for alias in node.names:  # ``from . import tables``: the module tables, not the package
                sub = f"{whole}.{alias.name}" if whole else alias.name
                found.add(sub if (SOURCE / sub.replace(".", "/")).with_suffix(".py").exists() else whole)
    return {module for module in found if module and module != name}


def test_no_module_is_much_over_500_lines():
    long = {
        _module_name(path): n for path in SOURCE.rglob("*.py") if (n := len(path.read_text().splitlines())) > MOST_LINES
    }
    assert not long, f"split by concept: {long}"


def test_module_level_imports_have_no_cycle():
    """Importing any module never re-enters one half-imported (a cycle works only by the order of its lines)."""
    graph = {_module_name(path): _imports(path, tree, top_level_only=True) for path, tree in _trees_at(SOURCE)}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError, naming the cycle


def _walk_run_time(tree: ast.AST):
    """Every node of ``tree``, in functions too, but for the bodies of ``if TYPE_CHECKING:`` (never run: names for
    annotations only) and ``if __name__ == "__main__":`` (run only when the module is the program, ``__main__``,
    so what it imports loads the package's own copy of the module whole: nothing half-imported is re-entered)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "__name__ == '__main__'"):
            yield node.test
            for other in node.orelse:
                yield other
                yield from _walk_run_time(other)
            continue
        yield node
        yield from _walk_run_time(node)


def test_no_import_cycle_even_inside_functions():
    """No cycle among the modules, counting the imports made inside functions: each module lives below those it
    serves, a piece two modules share sits in a module below both. Only ``if TYPE_CHECKING:`` and ``__main__``
    blocks are left out (see ``_walk_run_time``); three such point back up: training.prepare names DHRDTrainer,
    reproduction.own_data names ReproduceArguments, and ``python -m dhrd.training.train_options`` runs
    argparser's ``write_packaged``."""
    graph = {
        _module_name(path): _imports(path, tree, top_level_only=False, run_time_only=True)
        for path, tree in _trees_at(SOURCE)
    }
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError, naming the cycle


def test_packages_import_downwards_only():
    """Each subpackage and each top-level module is one node; every import, in a function too, is an arrow. No
    arrow runs back up: cli > reproduction > benchmarks > options > training, cot > inference, teacher > ..."""

    def node(module: str) -> str:
        return module.split(".")[0]

    graph: dict[str, set[str]] = {}
    for path, tree in _trees_at(SOURCE):
        graph.setdefault(node(_module_name(path)), set()).update(
            node(m) for m in _imports(path, tree, top_level_only=False) if node(m) != node(_module_name(path))
        )
    graph.pop("", None)
    graphlib.TopologicalSorter(graph).prepare()


def _trees_at(source: Path):
    for path in sorted(source.rglob("*.py")):
        yield path, ast.parse(path.read_text())
