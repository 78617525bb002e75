"""The package's structure: one place for each concept, and modules that talk through public names."""

import ast
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
        node.module
        for node in ast.walk(ast.parse((SOURCE / "training.py").read_text()))
        if isinstance(node, ast.ImportFrom)
    }
    assert "explain" not in imported


def test_plot_colours_live_in_one_place():
    holders = sorted(str(path) for path, tree in _trees() if "tab:" in ast.unparse(tree))
    assert holders == ["runtime.py"]
