"""Import layering of ``surgclip``, read from the source with ``ast`` (nothing is imported).

Every ``import`` and ``from ... import`` counts, at the top of a module or inside a function, with
relative imports resolved. An edge goes to the module named (``from .x import f`` -> ``pkg.x``;
``from . import x`` -> ``pkg.x`` when ``x`` is a module, else ``pkg``); the parent packages that
Python runs on the way are not edges.

- no cycle among the modules of ``surgclip.evaluation`` and ``surgclip.datasets`` together;
- ``surgclip.datasets`` reaches nothing of ``surgclip.evaluation``, ``surgclip.train`` or
  ``surgclip.serve``, and of ``surgclip.data`` only the media layer ``surgclip.data.readers``
  (which reaches no dataset or evaluation code);
- the synthetic sample generator ``surgclip.sample`` reaches no evaluation, training or serving code,
  and only the DataModule (default root) and ``surgclip data sample`` import it;
- the core, the package itself and its top-level modules (model, transform, sampling, tokenizer,
  factory, checkpoint, utils, ...) but not ``surgclip.cli``, which dispatches to every area, reaches
  none of ``surgclip.data``, ``.evaluation``, ``.train``, ``.serve`` or ``.datasets``;
- no import cycle anywhere in ``surgclip`` but those of ``ALLOWED_CYCLES``.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERED = ("surgclip.evaluation", "surgclip.datasets")
DATASETS_MAY_NOT_REACH = ("surgclip.evaluation", "surgclip.train", "surgclip.serve")
DATASETS_MAY_USE_OF_DATA = {"surgclip.data.readers"}
AREAS = ("surgclip.data", "surgclip.evaluation", "surgclip.train", "surgclip.serve", "surgclip.datasets", "surgclip.sample")
# the synthetic sample generator is its own package: it reaches no evaluation, training or serving code,
# and only these use it (the default ``data.root`` is generated on first use; ``surgclip data sample``)
SAMPLE = "surgclip.sample"
SAMPLE_USERS = {"surgclip.data.datamodule", "surgclip.data.cli"}
NOT_CORE = {"surgclip.cli"}  # the command line dispatches to every area
# Import cycles left in place, each as the modules it runs through, with the reason it stays.
# (None.)
ALLOWED_CYCLES: list[tuple[str, ...]] = []


def module_files(root: Path, package: str) -> dict[str, Path]:
    """{dotted module name: file} of every module of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(name: str, path: Path, tree: ast.AST):
    """Dotted names each import statement of a module asks for (relative ones resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                yield target, alias.name


def import_graph(root: Path, package: str = "surgclip") -> dict[str, set[str]]:
    """{module: modules of ``package`` it imports} over every module of ``package`` under ``root``."""
    files = module_files(root, package)
    graph = {}
    for name, path in files.items():
        edges = set()
        for target, member in _imported(name, path, ast.parse(path.read_text(), str(path))):
            if member is not None and f"{target}.{member}" in files:
                edges.add(f"{target}.{member}")
            elif target in files:
                edges.add(target)
        graph[name] = edges - {name} if path.name == "__init__.py" else edges
    return graph


def find_cycle(graph: dict[str, set[str]], within: tuple[str, ...]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` among the modules whose names start with one of ``within``, or None."""
    inside = lambda m: any(m == p or m.startswith(p + ".") for p in within)
    nodes = sorted(m for m in graph if inside(m))
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if not inside(n):
                continue
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in nodes:
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for n in graph.get(m, ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_graph_sees_top_level_function_level_and_relative_imports(graph):
    assert "surgclip.datasets.table" in graph["surgclip.datasets.cholec80"]  # from .table import ...
    assert "surgclip.datasets.cholec80" in graph["surgclip.datasets"]  # from . import cholec80
    assert "surgclip.datasets" in graph["surgclip.evaluation.runs"]  # from ..datasets import prediction_names
    assert "surgclip.data.readers" in graph["surgclip.datasets.custom"]  # inside a function
    assert "surgclip.evaluation.suite" in graph["surgclip.evaluation.cli"]  # inside a function


def test_no_cycle_among_evaluation_and_datasets(graph):
    cycle = find_cycle(graph, LAYERED)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_datasets_reach_no_evaluation_train_or_serve_and_only_the_readers_of_data(graph):
    datasets = [m for m in graph if m == "surgclip.datasets" or m.startswith("surgclip.datasets.")]
    direct = sorted(f"{m} -> {n}" for m in datasets for n in graph[m]
                    if n.startswith(DATASETS_MAY_NOT_REACH) or (n.startswith("surgclip.data.") or n == "surgclip.data")
                    and n not in DATASETS_MAY_USE_OF_DATA)
    assert not direct, f"surgclip.datasets imports: {direct}"
    for module in datasets:
        bad = sorted(m for m in reachable(graph, module) if m.startswith(DATASETS_MAY_NOT_REACH))
        assert not bad, f"{module} reaches {bad}"
    for module in DATASETS_MAY_USE_OF_DATA:
        assert not [m for m in reachable(graph, module) if m.startswith(LAYERED)], module


def core_modules(root: Path, package: str = "surgclip") -> list[str]:
    """The package itself and its top-level modules, less ``NOT_CORE``."""
    top = root / package.replace(".", "/")
    return sorted(m for m, path in module_files(root, package).items()
                  if path.parent == top and m not in NOT_CORE)


def core_violations(graph: dict[str, set[str]], core: list[str], areas: tuple[str, ...] = AREAS) -> list[str]:
    """``"core -> area module"`` for each module of ``areas`` that a core module reaches."""
    inside = lambda m: any(m == a or m.startswith(a + ".") for a in areas)  # noqa: E731
    return sorted(f"{m} -> {n}" for m in core for n in reachable(graph, m) if inside(n))


def without_allowed_cycles(graph: dict[str, set[str]], allowed=ALLOWED_CYCLES) -> dict[str, set[str]]:
    """``graph`` less the edges of each allowed cycle ``(a, b, ..., a)``."""
    out = {m: set(edges) for m, edges in graph.items()}
    for cycle in allowed:
        for a, b in zip(cycle, cycle[1:]):
            out[a].discard(b)
    return out


def test_the_core_reaches_no_area(graph):
    core = core_modules(ROOT)
    assert {"surgclip", "surgclip.model", "surgclip.transform", "surgclip.sampling", "surgclip.utils",
            "surgclip.checkpoint", "surgclip.factory"} <= set(core) and "surgclip.cli" not in core
    assert not any(m.startswith(tuple(a + "." for a in AREAS)) or m in AREAS for m in core)
    bad = core_violations(graph, core)
    assert not bad, f"the core imports the areas: {bad}"


def test_the_sample_generator_stands_apart(graph):
    inside = lambda m: m == SAMPLE or m.startswith(SAMPLE + ".")  # noqa: E731
    sample = [m for m in graph if inside(m)]
    assert {"surgclip.sample.generate", "surgclip.sample.benchmarks"} <= set(sample)
    for module in sample:
        bad = sorted(m for m in reachable(graph, module)
                     if m.startswith(("surgclip.evaluation", "surgclip.train", "surgclip.serve")))
        assert not bad, f"{module} reaches {bad}"
    users = sorted(m for m in graph if not inside(m) and any(inside(n) for n in graph[m]))
    assert set(users) <= SAMPLE_USERS, users


def test_no_import_cycle_but_the_allowed_ones(graph):
    for cycle in ALLOWED_CYCLES:  # each still exists (else it leaves the list)
        assert cycle[0] == cycle[-1] and all(b in graph[a] for a, b in zip(cycle, cycle[1:])), cycle
    cycle = find_cycle(without_allowed_cycles(graph), ("surgclip",))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_cycle_is_found_whether_top_level_or_inside_a_function(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a/__init__.py": "from . import x\n",
                      "pkg/a/x.py": "from .y import f\n",
                      "pkg/a/y.py": "def f():\n    from ..b import z\n",
                      "pkg/b/__init__.py": "", "pkg/b/z.py": "import pkg.a.x\n"})
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a.y"] == {"pkg.b.z"} and graph["pkg.b.z"] == {"pkg.a.x"}
    assert find_cycle(graph, ("pkg.a", "pkg.b")) == ["pkg.a.x", "pkg.a.y", "pkg.b.z", "pkg.a.x"]
    assert find_cycle(graph, ("pkg.a",)) is None  # the cycle leaves pkg.a
    (tmp_path / "pkg/b/z.py").write_text("x = 1\n")
    assert find_cycle(import_graph(tmp_path, "pkg"), ("pkg.a", "pkg.b")) is None


def test_a_core_module_reaching_an_area_or_a_new_cycle_is_found(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "from . import core\n", "pkg/cli.py": "from .data import x\n",
                      "pkg/core.py": "def f():\n    from .helper import g\n", "pkg/helper.py": "import pkg.data.x\n",
                      "pkg/data/__init__.py": "", "pkg/data/x.py": "from .. import core\n"})
    graph = import_graph(tmp_path, "pkg")
    assert core_modules(tmp_path, "pkg") == ["pkg", "pkg.cli", "pkg.core", "pkg.helper"]  # (NOT_CORE is surgclip's)
    assert core_violations(graph, ["pkg", "pkg.core"], ("pkg.data",)) == ["pkg -> pkg.data.x", "pkg.core -> pkg.data.x"]
    cycle = find_cycle(graph, ("pkg",))
    assert cycle is not None and cycle[0] == cycle[-1]
    allowed = [("pkg.core", "pkg.helper", "pkg.data.x", "pkg.core")]
    assert find_cycle(without_allowed_cycles(graph, allowed), ("pkg",)) is None
