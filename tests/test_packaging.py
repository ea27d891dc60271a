"""Packaging: every third-party module the package imports is a declared dependency, so a plain
``pip install surgclip`` runs every command but ``serve``, whose web stack is the ``serve`` extra."""
import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _imported_top_level_modules(folder: str = "", exclude: str | None = None) -> set[str]:
    found = set()
    for path in (REPO / "surgclip" / folder).rglob("*.py"):
        if exclude and exclude in path.relative_to(REPO / "surgclip").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "surgclip"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements) -> set[str]:
    return {_canonical(re.split(r"[<>=!~\[;\s]", req, maxsplit=1)[0]) for req in requirements}


def _undeclared(modules: set[str], declared: set[str]) -> dict:
    owners = md.packages_distributions()
    out = {}
    for module in sorted(modules):
        dists = {_canonical(d) for d in owners.get(module, [module])}
        if not dists & declared:
            out[module] = sorted(dists)
    return out


def test_every_imported_package_is_a_declared_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"])
    undeclared = _undeclared(_imported_top_level_modules(exclude="serve"), declared)
    assert not undeclared, f"imported by surgclip/ but not in [project].dependencies: {undeclared}"
    assert "av" in declared  # `surgclip sample` encodes with PyAV: not a test-only extra
    # the web page's stack is an extra that `surgclip serve` names when it is missing
    serve = _names(project["optional-dependencies"]["serve"])
    assert {"fastapi", "uvicorn"} <= serve and not serve & declared
    assert not _undeclared(_imported_top_level_modules("serve"), declared | serve)


def test_serve_names_its_extra_when_the_web_stack_is_missing(monkeypatch, capsys, tmp_path):
    import importlib.util

    from surgclip.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["serve", "--index", str(tmp_path)]) == 1
    assert "pip install 'surgclip[serve]'" in capsys.readouterr().err
