"""The library's imports run one way, from the top down, and never in a circle.

Every ``import`` of every module under ``tutorial_lib/`` is read with ``ast``, those inside functions
(lazy imports) included. Layers, from the top (see ``tutorial_lib/__init__.py``)::

    tutorial_lib/__init__.py
    bench, train, figures          the commands; widgets (the notebooks' sliders)
    experiments/                   one module per chapter experiment
    agents/                        Diffuser, the Push-T policy, MPPI, maze BC
    diffusion/, plotting           the generic machinery; figures and animations
    nets/, envs/                   networks; simulated tasks and experts
    core/                          infrastructure

A module may import from its own folder or from a lower layer; never from a higher layer, nor
from another folder of its own layer.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "tutorial_lib"

LAYERS = {  # first part of the module path under tutorial_lib -> rank (higher imports lower)
    "": 7,  # tutorial_lib/__init__.py
    "bench": 6, "train": 6, "figures": 6, "widgets": 6,
    "experiments": 5,
    "agents": 4,
    "diffusion": 3, "plotting": 3,
    "nets": 2, "envs": 2,
    "core": 1,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """The ``tutorial_lib`` modules that ``module`` imports anywhere in its code (lazy imports too)."""
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list ``[a, b, ..., a]`` of modules importing each other in a circle, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer(module: str) -> tuple[str, int]:
    parts = module.split(".")[1:]
    folder = parts[0] if parts else ""
    if folder not in LAYERS:
        raise KeyError(f"{module} is in no layer: add its folder to LAYERS in tests/test_layers.py "
                       "and to the map in tutorial_lib/__init__.py")
    return folder, LAYERS[folder]


def test_the_walk_sees_lazy_and_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert "tutorial_lib.core.recipes" in GRAPH["tutorial_lib.agents.diffuser"]  # inside load_diffuser
    assert "tutorial_lib.envs.maze" in GRAPH["tutorial_lib.agents.diffuser_planner"]  # inside methods
    assert "tutorial_lib.core" in GRAPH["tutorial_lib.core.checkpoint"]  # from . import __version__
    assert "tutorial_lib.nets.embeddings" in GRAPH["tutorial_lib.nets.mlp"]


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layers(module):
    folder, rank = layer(module)
    upward = []
    for target in sorted(GRAPH[module]):
        target_folder, target_rank = layer(target)
        same_folder = target_folder == folder and folder not in ("", "bench", "train", "figures", "widgets", "plotting")
        if not (target_rank < rank or same_folder):
            upward.append(f"{target} ({target_folder or 'tutorial_lib'}, layer {target_rank})")
    assert not upward, f"{module} (layer {rank}) imports from a layer not below it: {upward}"


def test_the_recipe_registry_imports_only_core():
    assert all(layer(m)[0] == "core" for m in GRAPH["tutorial_lib.core.recipes"])


def test_every_recipe_reference_resolves():
    from tutorial_lib.core.recipes import RECIPES, Ref

    for name, recipe in RECIPES.items():
        for field in dataclasses.fields(recipe):
            value = getattr(recipe, field.name)
            if isinstance(value, Ref):
                assert callable(value.resolve()), f"{name}.{field.name}: {value.path}"
        assert dataclasses.is_dataclass(recipe.config_cls), name
