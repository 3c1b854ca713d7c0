"""The layout's import rules, checked over the source (a later change that breaks them fails here).

- ``inference/`` (what runs in Lambda) and ``stepfn/`` (the state machine) import nothing from the host side;
- ``emulator/`` (the engines) imports nothing from ``cosmicai/`` (the command);
- the performance study (``cosmicai/study/``) imports the run API, never the reverse: only the
  study itself and the command registry name it;
- no import cycles between modules, counting imports inside functions too;
- every module says its one concern in a docstring and stays under about 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cosmicai", "emulator", "inference", "stepfn")
HOST_SIDE = ("cosmicai", "emulator")
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module of this project that ``path`` imports, at any depth of the file (string mentions aside)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    own = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name.split(".")[0] in PACKAGES:
            own.add(name)
    return own


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _package(module: str) -> str:
    return module.split(".")[0]


def test_the_layout_has_the_four_parts():
    assert {"cosmicai.cli", "cosmicai.study.bench", "emulator.embedded", "emulator.pool", "emulator.worker",
            "inference.handlers", "stepfn.definition"} <= set(MODULES)


@pytest.mark.parametrize("package", ["inference", "stepfn"])
def test_lambda_code_and_the_state_machine_import_nothing_from_the_host_side(package):
    offending = {m: sorted(i for i in GRAPH[m] if _package(i) in HOST_SIDE) for m in MODULES if _package(m) == package}
    assert not {m: i for m, i in offending.items() if i}


def test_the_engines_import_nothing_from_the_command():
    offending = {m: sorted(i for i in GRAPH[m] if _package(i) == "cosmicai") for m in MODULES if _package(m) == "emulator"}
    assert not {m: i for m, i in offending.items() if i}


def test_only_the_study_imports_the_study():
    offending = {
        m: sorted(i for i in GRAPH[m] if i.startswith("cosmicai.study"))
        for m in MODULES if not m.startswith("cosmicai.study")
    }
    assert not {m: i for m, i in offending.items() if i}


def test_no_import_cycles():
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if dep.startswith(node + "."):  # a package's __init__ naming its own submodules is not a cycle
                continue
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for module in MODULES:
        if module not in state:
            visit(module)
    assert not cycles, " | ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_its_concern_and_stays_small(module):
    path = MODULES[module]
    text = path.read_text()
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring and len(docstring.split()) >= 4, f"{path}: no module docstring saying what it is for"
    assert len(text.splitlines()) <= MAX_LINES, f"{path}: {len(text.splitlines())} lines (split it by concern)"
