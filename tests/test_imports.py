"""The import structure of certattr (issue 13, part 1), read from the sources with ``ast`` (nothing is imported).

* certattr.engine.validation imports no certattr module, certattr.engine.config none but certattr.engine.validation (at any depth:
  an import inside a function counts too);
* no attribution method (certattr.methods.*) imports the test fixtures of certattr.models.testing;
* the module-level imports (those that run when a module is imported: not inside a function) form no cycle.

The checker is tested on small fake sources and graphs too, so that it cannot pass by seeing nothing.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "certattr"


# --- the checker ----------------------------------------------------------------------------------------------
def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """{dotted module name: path} for every .py file of the package (a package is named by its folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, source: str, modules, *, is_package: bool = False) -> tuple[set, set]:
    """(module-level, all) certattr modules that module ``name`` imports; ``modules``: the known module names.

    ``import a.b``, ``from a import b`` (b a module or a name in a), relative imports at any level, and
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. Module level = executed when
    the module is imported: anywhere but inside a function or lambda body or an ``if TYPE_CHECKING:`` block.
    An import of a.b.c also runs the packages a.b and a, except those that contain the importer (they are
    being imported already); the importer itself is left out.
    """
    modules = set(modules)
    package = name if is_package else name.rpartition(".")[0]

    def resolve(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            return [base] + [f"{base}.{alias.name}" for alias in node.names]
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__"):
                return [node.args[0].value]
        return []

    def targets(node) -> set[str]:
        found = set()
        for target in resolve(node):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # the module and the packages it runs
                found.add(".".join(parts[:i]))
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        return {t for t in found if t in modules and t not in own}

    top, every = set(), set()

    def visit(node, at_top: bool):
        got = targets(node)
        every.update(got)
        if at_top:
            top.update(got)
        for child in ast.iter_child_nodes(node):
            inside = at_top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) \
                and not (isinstance(node, ast.If) and _is_type_checking(node) and child in node.body)
            visit(child, inside)

    visit(ast.parse(source), True)
    return top, every


def import_graphs(root: Path = PACKAGE) -> tuple[dict, dict]:
    """({module: module-level imports}, {module: all imports}) over the certattr modules."""
    modules = module_names(root)
    top, every = {}, {}
    for name, path in modules.items():
        top[name], every[name] = imports(name, path.read_text(encoding="utf-8"), modules,
                                         is_package=path.name == "__init__.py")
    return top, every


def find_cycle(graph: dict) -> list | None:
    """A cycle [a, b, ..., a] of the directed graph {node: successors}, or None (iterative DFS)."""
    state, parent = {}, {}
    for start in sorted(graph):
        if start in state:
            continue
        state[start] = "open"
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        while stack:
            node, successors = stack[-1]
            for nxt in successors:
                if state.get(nxt) == "open":  # back edge: the cycle is nxt -> ... -> node -> nxt
                    cycle, at = [node], node
                    while at != nxt:
                        at = parent[at]
                        cycle.append(at)
                    return cycle[::-1] + [nxt]
                if nxt not in state:
                    state[nxt], parent[nxt] = "open", node
                    stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
            else:
                state[node] = "done"
                stack.pop()
    return None


# --- the package's structure ----------------------------------------------------------------------------------
TOP, EVERY = import_graphs()


def test_the_graph_was_read():
    """A parser that saw nothing would pass every check below: it sees the imports known to be there."""
    assert {"certattr.engine.validation", "certattr.engine.config", "certattr.engine.smoothing", "certattr.methods.lrp"} <= set(TOP)
    assert {"certattr.engine.validation", "certattr.methods", "certattr.engine.cache"} <= TOP["certattr.engine.smoothing"]
    assert "certattr.methods.base" in TOP["certattr.methods.lrp"]
    assert "certattr.methods" in EVERY["certattr.cli"] - TOP["certattr.cli"]  # a lazy import, inside a function


def test_validation_and_config_import_no_certattr_module_but_validation():
    assert EVERY["certattr.engine.validation"] == set(), "certattr.engine.validation must import no certattr module"
    assert EVERY["certattr.engine.config"] <= {"certattr.engine.validation"}, \
        f"certattr.engine.config may import certattr.engine.validation only, not {sorted(EVERY['certattr.engine.config'] - {'certattr.engine.validation'})}"


def test_no_method_imports_the_test_fixtures():
    offenders = {name: "certattr.models.testing" for name, deps in EVERY.items()
                 if (name == "certattr.methods" or name.startswith("certattr.methods.")) and "certattr.models.testing" in deps}
    assert not offenders, f"attribution methods import certattr.models.testing: {sorted(offenders)}"


def test_module_level_imports_have_no_cycle():
    cycle = find_cycle(TOP)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


# --- the checker on fake sources ------------------------------------------------------------------------------
FAKE = {"certattr", "certattr.engine.validation", "certattr.models.registry", "certattr.models.testing", "certattr.methods",
        "certattr.methods.base", "certattr.methods.lrp"}


@pytest.mark.parametrize("name, source, top, every", [
    # the old lrp: a module-level relative import of the test fixtures, two levels up
    ("certattr.methods.lrp", "from ..testing import BasicBlock\nfrom .base import register\n",
     {"certattr.models.testing", "certattr.methods.base"}, {"certattr.models.testing", "certattr.methods.base"}),
    # the old validation: lazy imports of the registries inside a function
    ("certattr.engine.validation", "import math\ndef check(p):\n    from .methods import get_method\n    from .models import MODELS\n",
     set(), {"certattr.methods", "certattr.models.registry"}),
    # absolute imports, a submodule named in a from-import, importlib, the packages a submodule runs
    ("certattr.engine.validation", "import certattr.models.testing\nfrom certattr import models\n"
                            "import importlib\nimportlib.import_module('certattr.methods.lrp')\n",
     {"certattr.models.testing", "certattr.models.registry", "certattr.methods", "certattr.methods.lrp"},
     {"certattr.models.testing", "certattr.models.registry", "certattr.methods", "certattr.methods.lrp"}),
    # a class body runs at import; TYPE_CHECKING blocks and lambdas do not; non-certattr imports are ignored
    ("certattr.models.registry", "from typing import TYPE_CHECKING\nimport numpy\nif TYPE_CHECKING:\n    from .testing import x\n"
                        "class A:\n    from .validation import check_n\nf = lambda: __import__('certattr.methods')\n",
     {"certattr.engine.validation"}, {"certattr.engine.validation", "certattr.models.testing", "certattr.methods"}),
    # the package a module is in is not an import of it
    ("certattr.methods.base", "from . import lrp\nfrom .. import validation\n",
     {"certattr.methods.lrp", "certattr.engine.validation"}, {"certattr.methods.lrp", "certattr.engine.validation"}),
])
def test_the_checker_reads_imports(name, source, top, every):
    got_top, got_every = imports(name, source, FAKE)
    assert (got_top, got_every) == (top, every)


def test_the_checker_flags_the_old_structure():
    """The old lrp (importing certattr.models.testing, which imports certattr.models.registry) and the old validation (lazy
    imports of the registries) fail the checks above; an import circle through module-level imports is found."""
    old_lrp = imports("certattr.methods.lrp", "from ..testing import BasicBlock, TinyResNet\n", FAKE)[1]
    assert "certattr.models.testing" in old_lrp
    old_validation = imports("certattr.engine.validation", "def f():\n    from .methods import get_method\n", FAKE)[1]
    assert old_validation
    graph = {"certattr.methods.lrp": {"certattr.models.testing"}, "certattr.models.testing": {"certattr.models.registry"},
             "certattr.models.registry": {"certattr.methods.lrp"}, "certattr.engine.validation": set()}
    assert find_cycle(graph) == ["certattr.methods.lrp", "certattr.models.testing", "certattr.models.registry",
                                 "certattr.methods.lrp"]
    assert find_cycle({**graph, "certattr.models.registry": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}) == ["b", "c", "d", "b"]
    # a diamond is no cycle
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
