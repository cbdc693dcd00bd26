"""The house's layering, read from the source with `ast` (every import, at module level or
inside a function): the ground (`skymesh/` without its command package) imports nothing above
it; `relay/` and `controller/` build on the ground and never on each other; `sdk/` uses only
the ground; the command layer (`skymesh/cli/`, `python -m skymesh`) is the only code that
wires them together. No import cycles. `docs/architecture.md` lists every module with its
kind, and a pure core imports no I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("skymesh", "relay", "controller", "sdk")
GENERATED = "skymesh.v1"
ALLOWED = {
    "ground": {"ground"},
    "relay": {"ground", "relay"},
    "controller": {"ground", "controller"},
    "sdk": {"ground", "sdk"},
    "command": {"ground", "relay", "controller", "sdk", "command"},
}
KINDS = ("core", "shell", "command", "data")
# what a pure core must not touch: it is fed inputs (and the time) by its shell
IO_MODULES = {"asyncio", "socket", "subprocess", "grpc", "aioquic", "uvloop", "etcd3",
              "threading", "signal", "selectors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = module_name(path)
            if not name.startswith(GENERATED):
                found[name] = path
    return found


MODULES = project_modules()


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top == "skymesh":
        if module == "skymesh.__main__" or module.startswith("skymesh.cli"):
            return "command"
        return "ground"
    return top


def imports(module: str) -> tuple[set[str], set[str]]:
    """(project modules, other top-level packages) that `module` imports anywhere."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    inner, outer = set(), set()

    def note(name: str) -> None:
        if name.split(".")[0] in PACKAGES:
            if name.startswith(GENERATED):
                return
            # the longest prefix that is a module of ours: `from a import b` may name module
            # a.b or a name defined in a
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                inner.add(name)
        else:
            outer.add(name.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                note(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                note(f"{base}.{alias.name}")
    inner.discard(module)
    return inner, outer


GRAPH = nx.DiGraph()
for _name in MODULES:
    GRAPH.add_node(_name)
    for _target in imports(_name)[0]:
        GRAPH.add_edge(_name, _target)


def test_the_layers_are_found():
    # the rules below mean nothing if the walk found nothing to check
    assert {"skymesh.catalogue", "relay.fabric", "controller.engine", "sdk.client",
            "skymesh.cli.main"} <= set(MODULES)
    assert ("skymesh.cli.main", "skymesh.cli.up") in GRAPH.edges or any(
        t.startswith("skymesh.cli.") for t in GRAPH.successors("skymesh.cli.main"))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_or_sideways_within_a_floor(module):
    own = layer(module)
    wrong = sorted(f"{target} ({layer(target)})" for target in GRAPH.successors(module)
                   if layer(target) not in ALLOWED[own])
    assert not wrong, f"{module} ({own}) may import only {sorted(ALLOWED[own])}: {wrong}"


def test_no_import_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(GRAPH) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_the_relay_data_plane_loads_no_quic_and_no_grpc():
    closure = {"relay.fabric", *nx.descendants(GRAPH, "relay.fabric")}
    outer = set().union(*(imports(m)[1] for m in closure))
    assert not outer & {"aioquic", "grpc"}, sorted(closure)


def test_the_sdk_reaches_no_relay_or_controller():
    closure = nx.descendants(GRAPH, "sdk.client") | nx.descendants(GRAPH, "sdk.resolve")
    assert all(layer(m) in ("ground", "sdk") for m in closure), sorted(closure)


# -- the code map -------------------------------------------------------------------------------

ROW = re.compile(r"^\|\s*`([^`]+\.py)`\s*\|\s*([a-z ]+?)\s*\|")


def documented() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


DOCUMENTED = documented()


def listed_path(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


def test_every_module_is_in_the_code_map_with_its_kind():
    missing = [listed_path(m) for m in MODULES
               if listed_path(m) not in DOCUMENTED and MODULES[m].read_text().strip()
               and not (MODULES[m].name == "__init__.py"
                        and not _has_code(MODULES[m]))]
    assert not missing, f"docs/architecture.md does not list {missing}"
    stale = [p for p in DOCUMENTED if not (ROOT / p).is_file()]
    assert not stale, f"docs/architecture.md lists modules that do not exist: {stale}"
    odd = {p: k for p, k in DOCUMENTED.items() if k not in KINDS}
    assert not odd, f"kinds are {KINDS}: {odd}"


def _has_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               for n in body)


@pytest.mark.parametrize("path", sorted(p for p, k in DOCUMENTED.items() if k == "core"))
def test_a_pure_core_does_no_io(path):
    module = module_name(ROOT / path)
    assert module in MODULES, path
    touched = sorted(imports(module)[1] & IO_MODULES)
    assert not touched, f"{path} is listed as a pure core but imports {touched}"
