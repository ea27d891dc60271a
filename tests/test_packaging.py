"""Packaging: every third-party module the package imports is a declared dependency, so a plain
``pip install surgclip`` (no test extra) runs every command."""
import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in (REPO / "surgclip").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "surgclip"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_a_declared_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_canonical(re.split(r"[<>=!~\[;\s]", req, maxsplit=1)[0]) for req in project["dependencies"]}
    owners = md.packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_level_modules()):
        dists = {_canonical(d) for d in owners.get(module, [module])}
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported by surgclip/ but not in [project].dependencies: {undeclared}"
    assert "av" in declared  # `surgclip sample` encodes with PyAV: not a test-only extra
