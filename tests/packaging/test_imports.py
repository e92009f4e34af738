"""The import structure of certattr (issue 21): the package's folders are the layers of its pipeline.

Read from the sources with ``ast`` (nothing of certattr is imported, except by the two subprocess probes at the end):

* (a) every module imports only from its own package or from the packages of lower layers (``LAYERS`` below), at
  any depth: an import inside a function, a class body or an ``if TYPE_CHECKING:`` block counts too;
* (b) no import circle, neither among the modules (all imports, those inside functions included) nor among the
  packages (an edge A -> B when any module of A imports any module of B);
* (c) an import of a certattr module inside a function is allowed only where it keeps ``import certattr`` or the
  command line fast: the pairs of ``LAZY_IMPORTS``, each with its reason, and each must still exist;
* (d) no module of the package imports the facade ``certattr`` itself (``from certattr import X``,
  ``from .. import X`` reaching the top package): they import from the module that defines X;
* (e) ``import certattr`` and ``certattr --help`` load no heavy third-party package (checked in a subprocess).

The checker is tested on small fake sources (module name -> source text), among them the three import circles the
package had when it was split into folders, so that it cannot pass by seeing nothing.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

# --- the declared structure -----------------------------------------------------------------------------------
#: The layers, low to high. A module may import from its own package and from the packages of lower rows only;
#: the packages of one row must not import each other.
LAYERS = (
    ("certattr.engine",),                             # 1 sparsify, smooth, count, certify; the sample cache
    ("certattr.models",),                             # 2 the models and the images
    ("certattr.methods",),                            # 3 the attribution methods
    ("certattr.certificates", "certattr.evaluation",  # 4 the related certificates and the attack | metrics, grids
     "certattr.profiling"),                           #   | where a certificate's time goes, the GPU check
    ("certattr.course",),                             # 5 the course edition
    ("certattr.book",),                               # 6 the book's chapters and their build
    ("certattr.sweeps",),                             # 7 the book's samples on Dask
    ("certattr.cli",),                                # 8 the command line
)
#: The public facade (certattr/__init__.py), above every layer; no module of the package imports from it.
FACADE = "certattr"

#: The only imports of certattr modules written inside a function: (importer, imported) -> why it is lazy. An
#: allowed one must keep a heavy package (``HEAVY``) out of ``import certattr`` or of ``certattr --help``.
LAZY_IMPORTS = {
    ("certattr.methods.lrp", "certattr.methods.lrp_rules"):
        "LRP's rules are zennit's: zennit (and torchvision, which zennit imports) load at LRP's first call",
    ("certattr.methods.lrp", "certattr.models.canonizers"):
        "the canonizers are zennit's: zennit (and torchvision) load when LRP first checks a model",
    ("certattr.models.wrap", "certattr.models.canonizers"):
        "the canonizers are zennit's: `certattr.wrap` is in the facade, zennit loads when a model is wrapped",
    ("certattr.cli", "certattr.evaluation.recheck"):
        "the plain recomputation of the findings reads the CSV tables with pandas: pandas loads for "
        "`certattr findings-check` only, not for `certattr --help`",
}

#: Third-party packages that ``import certattr`` may not load, and those that ``certattr --help`` may not load.
NOT_ON_IMPORT = ("torchvision", "zennit", "captum", "timm", "matplotlib", "pandas", "papermill", "dask", "jupytext",
                 "nbformat", "seaborn", "sklearn", "skimage")
NOT_ON_HELP = ("papermill", "dask", "matplotlib", "pandas")
#: What an allowed lazy import must keep from loading (at least one of these, at the imported module's top level).
HEAVY = frozenset(NOT_ON_IMPORT + ("distributed", "IPython"))

PACKAGE = Path(__file__).resolve().parents[2] / "certattr"


# --- the checker ----------------------------------------------------------------------------------------------
MODULE, FUNCTION, TYPE_CHECKING_BLOCK = "module level", "inside a function", "if TYPE_CHECKING"
COMPUTED = "<a computed name>"  #: what ``importlib.import_module(name)`` imports when ``name`` is no literal


@dataclass(frozen=True)
class Import:
    """One imported module of one import statement.

    ``imported`` is the certattr module the statement names (the most specific one: ``from .engine import cache``
    names certattr.engine.cache), or, for a third-party import, its top-level package (``captum``). ``facade``:
    the statement takes names from the facade ``certattr`` itself.
    """

    importer: str
    imported: str
    file: str
    line: int
    where: str
    internal: bool
    facade: bool = False

    @property
    def at(self) -> str:
        return f"{self.file}:{self.line}"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """{dotted module name: path} for every .py file of the package (a package is named by its folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def source_file(name: str, is_package: bool) -> str:
    """The file of module ``name``, relative to the repository: certattr/engine/cache.py, certattr/__init__.py."""
    return name.replace(".", "/") + ("/__init__.py" if is_package else ".py")


def ancestors(name: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']: the module and the packages that run before it."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def read_imports(name: str, source: str, modules, *, is_package: bool = False) -> list[Import]:
    """Every import of module ``name`` (its source text ``source``; ``modules``: the known certattr modules).

    Sees ``import a.b``, ``from a import b`` (b a module or a name in a), relative imports at any level, and
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name, wherever they are written.
    ``where``: module level (runs when the module is imported; class bodies included), inside a function (or
    lambda) body, or in an ``if TYPE_CHECKING:`` block. The importer's own packages (being imported already)
    are left out, except the facade when the statement takes names from it.
    """
    modules = set(modules)
    package = name if is_package else name.rpartition(".")[0]
    file = source_file(name, is_package)
    own = set(ancestors(name))

    def absolute(level: int, module: str | None) -> str | None:
        if not level:
            return module or ""
        base = package.split(".")
        if level - 1 >= len(base):
            return None  # beyond the top package: not importable
        base = base[:len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def record(target: str, node, where: str, *, from_names: bool = False) -> Import | None:
        top = target.split(".")[0]
        if top != FACADE:
            return Import(name, top, file, node.lineno, where, internal=False)
        known = [m for m in ancestors(target) if m in modules]
        imported = known[-1] if known else FACADE
        facade = imported == FACADE and (from_names or target == FACADE)
        if imported in own and not (facade and name != FACADE):
            return None
        return Import(name, imported, file, node.lineno, where, internal=True, facade=facade and name != FACADE)

    def statement(node, where: str) -> list[Import]:
        found = []
        if isinstance(node, ast.Import):
            found = [record(alias.name, node, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.level, node.module)
            if base is None:
                return []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if alias.name != "*" and sub in modules:
                    found.append(record(sub, node, where))
                else:  # a name defined in module `base`
                    found.append(record(base, node, where, from_names=True))
        elif isinstance(node, ast.Call) and _called(node) in ("import_module", "__import__"):
            if not (node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                return [Import(name, COMPUTED, file, node.lineno, where, internal=False)]
            literal = node.args[0].value
            dots = len(literal) - len(literal.lstrip("."))
            target = absolute(dots, literal[dots:] or None) if dots else literal
            if target:
                found = [record(target, node, where)]
        return [f for f in found if f is not None]

    found: list[Import] = []

    def visit(node, where: str):
        found.extend(statement(node, where))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner = node.body if isinstance(node.body, list) else [node.body]
            for child in ast.iter_child_nodes(node):  # decorators and defaults run where the def is
                visit(child, FUNCTION if any(child is b for b in inner) else where)
        elif isinstance(node, ast.If) and _is_type_checking(node.test) and where == MODULE:
            for child in ast.iter_child_nodes(node):
                visit(child, TYPE_CHECKING_BLOCK if any(child is b for b in node.body) else where)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child, where)

    visit(ast.parse(source), MODULE)
    return sorted(set(found), key=lambda imp: (imp.line, imp.imported))  # one per module a statement names


def read_sources(sources: dict[str, str], packages=()) -> list[Import]:
    """Every import of the modules ``sources`` ({module name: source text}); ``packages``: those that are folders
    (besides every name that has a submodule in ``sources``)."""
    folders = set(packages) | {a for name in sources for a in ancestors(name)[:-1]}
    return [imp for name, text in sorted(sources.items())
            for imp in read_imports(name, text, sources, is_package=name in folders)]


def read_package(root: Path = PACKAGE) -> list[Import]:
    """Every import of every module of the package at ``root``."""
    modules = module_names(root)
    return [imp for name, path in modules.items()
            for imp in read_imports(name, path.read_text(encoding="utf-8"), modules,
                                    is_package=path.name == "__init__.py")]


def module_graph(found: list[Import], modules, *, where=(MODULE, FUNCTION, TYPE_CHECKING_BLOCK)) -> dict:
    """{module: the certattr modules it runs}: each imported module and its packages (not the importer's own, not
    the facade, which every module's import runs first). Every module of ``modules`` is a node."""
    graph = {m: set() for m in modules}
    for imp in found:
        if imp.internal and not imp.facade and imp.where in where:
            own = set(ancestors(imp.importer))
            graph[imp.importer] |= {m for m in ancestors(imp.imported)
                                    if m in graph and m not in own and m != FACADE}
    return graph


def layer_of(module: str, layers=LAYERS) -> tuple[int, str] | None:
    """(row, 1 = lowest; package) of the declared package that holds ``module``; None if none does."""
    for row, packages in enumerate(layers, start=1):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return row, package
    return None


def package_graph(found: list[Import], layers=LAYERS) -> dict:
    """{declared package: the other declared packages its modules import} (the facade left out)."""
    graph = {p: set() for row in layers for p in row}
    for imp in found:
        src, dst = layer_of(imp.importer, layers), layer_of(imp.imported, layers)
        if imp.internal and src and dst and src[1] != dst[1]:
            graph[src[1]].add(dst[1])
    return graph


def layer_violations(found: list[Import], layers=LAYERS) -> list[str]:
    """'file:line: importer (layer r, package) imports imported (layer s, package)' for each import of a higher
    layer, or of another package of the same row."""
    out = []
    for imp in found:
        src, dst = layer_of(imp.importer, layers), layer_of(imp.imported, layers)
        if imp.internal and src and dst and (dst[0] > src[0] or (dst[0] == src[0] and dst[1] != src[1])):
            out.append(f"{imp.at}: {imp.importer} (layer {src[0]}, {src[1]}) imports {imp.imported} "
                       f"(layer {dst[0]}, {dst[1]}), {imp.where}")
    return sorted(set(out), key=_by_file_and_line)


def _by_file_and_line(text: str):
    file, line, _ = text.split(":", 2)
    return file, int(line), text


def circles(graph: dict) -> list[tuple[list[str], list[str]]]:
    """The import circles of the directed graph {node: successors}: for each strongly connected component of
    more than one node (or a node that imports itself), (its nodes sorted, the shortest cycle [a, ..., a]
    through its first node). Sorted by first node."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]

    def connect(node):  # Tarjan's algorithm; the graphs here have ~100 nodes, recursion is fine
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    out = []
    for component in components:
        first = min(component)
        if len(component) == 1 and first not in graph.get(first, ()):
            continue
        parent, queue, cycle = {}, deque([first]), None
        while queue and cycle is None:  # breadth first from `first`, inside the component, back to `first`
            node = queue.popleft()
            for nxt in sorted(graph.get(node, ())):
                if nxt == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(parent[path[-1]])
                    cycle = path[::-1] + [first]
                    break
                if nxt in component and nxt != first and nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        out.append((sorted(component), cycle))
    return sorted(out)


def describe(found_circles) -> str:
    return "\n".join(f"  {len(nodes)} in a circle: {', '.join(nodes)}; e.g. {' -> '.join(cycle)}"
                     for nodes, cycle in found_circles)


def lazy_imports(found: list[Import]) -> list[Import]:
    """The imports of certattr modules written inside a function (the facade's own left to check (d))."""
    return [imp for imp in found if imp.internal and not imp.facade and imp.where == FUNCTION]


def unlisted_lazy_imports(found: list[Import], allowed=LAZY_IMPORTS) -> list[str]:
    return [f"{imp.at}: {imp.importer} imports {imp.imported} inside a function"
            for imp in lazy_imports(found) if (imp.importer, imp.imported) not in allowed]


def stale_allowances(found: list[Import], allowed=LAZY_IMPORTS) -> list[tuple[str, str]]:
    """Allowed pairs that no function-level import makes any more (so that the list stays exact)."""
    made = {(imp.importer, imp.imported) for imp in lazy_imports(found)}
    return sorted(set(allowed) - made)


def facade_imports(found: list[Import]) -> list[str]:
    return [f"{imp.at}: {imp.importer} imports from the facade certattr, {imp.where}" for imp in found if imp.facade]


def loads_heavy(module: str, found: list[Import], heavy=HEAVY) -> set[str]:
    """The packages of ``heavy`` that importing ``module`` loads through module-level imports (read statically:
    certattr modules followed, third-party ones named at a certattr module's top level)."""
    modules = {imp.importer for imp in found} | {imp.imported for imp in found if imp.internal} | {module}
    graph = module_graph(found, modules, where=(MODULE,))
    seen, todo = set(), [m for m in ancestors(module) if m in graph and m != FACADE]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return {imp.imported for imp in found
            if imp.importer in seen and not imp.internal and imp.where == MODULE and imp.imported in heavy}


# --- the package's structure ----------------------------------------------------------------------------------
MODULES = module_names()
FOUND = read_package()
GRAPH = module_graph(FOUND, MODULES)


def test_the_graph_was_read():
    """A reader that saw nothing would pass every check below: it sees the imports known to be there."""
    assert {"certattr.engine.validation", "certattr.engine.config", "certattr.methods.lrp", "certattr.cli"} \
        <= set(MODULES)
    assert sum(len(successors) for successors in GRAPH.values()) > 100
    assert {"certattr.engine.validation", "certattr.methods.base"} <= GRAPH["certattr.methods.lrp"]
    assert {"certattr.engine", "certattr.engine.certify"} <= GRAPH[FACADE]  # the facade exports certify_maps
    assert any(imp.importer == "certattr.models.sources" and imp.where == FUNCTION for imp in FOUND)  # lazy torchvision, timm
    assert {"captum", "torch"} <= {imp.imported for imp in FOUND if imp.importer == "certattr.methods.gradient"}


def test_every_module_is_in_a_declared_layer():
    undeclared = sorted(m for m in MODULES if m != FACADE and layer_of(m) is None)
    assert not undeclared, f"modules outside the declared layers (add them to a package of LAYERS): {undeclared}"
    missing = sorted(p for row in LAYERS for p in row if p not in MODULES)
    assert not missing, f"declared packages that do not exist: {missing}"


def test_no_module_imports_a_higher_layer():
    found = layer_violations(FOUND)
    assert not found, "imports against the layers (low to high: " + " < ".join(" | ".join(r) for r in LAYERS) \
        + "):\n  " + "\n  ".join(found)


def test_no_module_import_circle():
    found = circles(GRAPH)
    assert not found, "import circles among the modules (all imports, those inside functions too):\n" + describe(found)


def test_no_package_import_circle():
    found = circles(package_graph(FOUND))
    assert not found, "import circles among the packages:\n" + describe(found)


def test_imports_inside_functions_are_only_the_allowed_ones():
    found = unlisted_lazy_imports(FOUND)
    assert not found, "imports of certattr modules inside functions (import at the top of the module, or add the " \
        "pair and its reason to LAZY_IMPORTS if it keeps `import certattr` or the CLI fast):\n  " + "\n  ".join(found)


def test_the_allow_list_is_exact():
    stale = stale_allowances(FOUND)
    assert not stale, f"LAZY_IMPORTS lists pairs that no function-level import makes any more: {stale}"


@pytest.mark.parametrize("pair", sorted(LAZY_IMPORTS))
def test_an_allowed_lazy_import_defers_something_heavy(pair):
    heavy = loads_heavy(pair[1], FOUND)
    assert heavy, f"{pair[0]} imports {pair[1]} inside a function, but importing it loads none of {sorted(HEAVY)}: " \
                  "import it at the top of the module and remove the pair from LAZY_IMPORTS"


def test_every_import_names_its_module():
    """An import by a computed name (``importlib.import_module(name)``) would escape every check above."""
    found = [imp.at for imp in FOUND if imp.imported == COMPUTED]
    assert not found, f"imports of a computed name (write the module's name as a literal): {found}"


def test_no_module_imports_the_facade():
    found = facade_imports(FOUND)
    assert not found, "import from the module that defines the name, not from the facade:\n  " + "\n  ".join(found)


# --- (e) what importing loads, in a fresh interpreter -----------------------------------------------------------
def loaded_modules(code: str) -> set[str]:
    """sys.modules after running ``code`` in a fresh interpreter (its stdout is discarded)."""
    probe = ("import contextlib, io, json, sys\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             + "".join(f"    {line}\n" for line in code.splitlines())
             + "print(json.dumps(sorted(sys.modules)))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def loaded_of(loaded: set[str], packages) -> list[str]:
    """The packages of ``packages`` that were loaded (a package counts when any of its submodules was)."""
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in loaded))


def test_loaded_of_counts_submodules():
    assert loaded_of({"matplotlib.pyplot", "pandas_extra", "dask"}, ("matplotlib", "pandas", "dask", "timm")) \
        == ["dask", "matplotlib"]


def test_import_certattr_is_cheap():
    loaded = loaded_modules("import certattr")
    assert "certattr.engine.certify" in loaded  # the probe sees what the facade imports
    assert not loaded_of(loaded, NOT_ON_IMPORT), f"`import certattr` loads {loaded_of(loaded, NOT_ON_IMPORT)}"


#: The facade's main API (issue 21): name -> the module that defines it. The facade re-exports, never redefines.
PUBLIC_API = {
    "SmoothedAttribution": "certattr.engine.smoothing", "SamplingConfig": "certattr.engine.config",
    "CertConfig": "certattr.engine.config", "Certificate": "certattr.engine.certificate",
    "load_model": "certattr.models.registry", "get_method": "certattr.engine.registry",
    "bundled_photo": "certattr.models.data", "sparsified_smoothgrad": "certattr.certificates.sparsified_smoothgrad",
    "topk_certificate": "certattr.certificates.sparsified_smoothgrad", "smooth_uniform": "certattr.certificates.cosine",
    "certify_cosine": "certattr.certificates.cosine",
}


def test_the_facade_exports_the_main_api_from_its_modules():
    probe = ("import certattr, json\n"
             "print(json.dumps({name: getattr(certattr, name).__module__ for name in certattr.__all__\n"
             "                  if hasattr(getattr(certattr, name), '__module__')}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    exported = json.loads(done.stdout.strip().splitlines()[-1])
    assert {name: exported.get(name) for name in PUBLIC_API} == PUBLIC_API


def test_cli_help_is_cheap():
    loaded = loaded_modules("from certattr.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert "certattr.cli" in loaded
    assert not loaded_of(loaded, NOT_ON_HELP), f"`certattr --help` loads {loaded_of(loaded, NOT_ON_HELP)}"


# --- the checker on fake sources ------------------------------------------------------------------------------
FAKE = {"certattr", "certattr.engine", "certattr.engine.validation", "certattr.engine.config", "certattr.models",
        "certattr.models.registry", "certattr.models.testing", "certattr.methods", "certattr.methods.base",
        "certattr.methods.lrp"}


def _certattr_imports(name, source, *, is_package=False):
    found = read_imports(name, source, FAKE, is_package=is_package)
    return ({i.imported for i in found if i.internal and i.where == MODULE},
            {i.imported for i in found if i.internal})


@pytest.mark.parametrize("name, source, top, every", [
    # a module-level relative import two levels up, and one of a sibling
    ("certattr.methods.lrp", "from ..models.testing import BasicBlock\nfrom .base import register\n",
     {"certattr.models.testing", "certattr.methods.base"}, {"certattr.models.testing", "certattr.methods.base"}),
    # imports of the registries inside a function
    ("certattr.engine.validation", "import math\ndef check(p):\n    from ..methods import get_method\n"
                                   "    from ..models.registry import MODELS\n",
     set(), {"certattr.methods", "certattr.models.registry"}),
    # absolute imports, a submodule named in a from-import, importlib with a literal
    ("certattr.engine.validation", "import certattr.models.testing\nfrom certattr.models import registry\n"
                                   "import importlib\nimportlib.import_module('certattr.methods.lrp')\n",
     {"certattr.models.testing", "certattr.models.registry", "certattr.methods.lrp"},
     {"certattr.models.testing", "certattr.models.registry", "certattr.methods.lrp"}),
    # a class body runs at import; TYPE_CHECKING blocks and lambdas do not; non-certattr imports are not certattr's
    ("certattr.models.registry", "from typing import TYPE_CHECKING\nimport numpy\nif TYPE_CHECKING:\n"
                                 "    from .testing import x\nclass A:\n    from ..engine.validation import check_n\n"
                                 "f = lambda: __import__('certattr.methods')\n",
     {"certattr.engine.validation"}, {"certattr.engine.validation", "certattr.models.testing", "certattr.methods"}),
    # the package a module is in is not an import of it; `from . import lrp` names the submodule
    ("certattr.methods.base", "from . import lrp\nfrom .. import engine\nfrom . import register\n",
     {"certattr.methods.lrp", "certattr.engine"}, {"certattr.methods.lrp", "certattr.engine"}),
    # in a package's __init__, `.` is the package itself; a relative importlib literal is resolved too
    ("certattr.methods", "from .base import AttributionMethod\nfrom . import lrp\n"
                         "def __getattr__(n):\n    import importlib\n"
                         "    return importlib.import_module('..engine.config', __name__)\n",
     {"certattr.methods.base", "certattr.methods.lrp"},
     {"certattr.methods.base", "certattr.methods.lrp", "certattr.engine.config"}),
])
def test_the_checker_reads_imports(name, source, top, every):
    assert _certattr_imports(name, source, is_package=name == "certattr.methods") == (top, every)


def test_the_checker_records_where_and_lines():
    found = read_imports("certattr.methods.base", "import torch\n\n"
                         "@decorate(__import__('certattr.models.testing'))\ndef f(x=1):\n"
                         "    from ..models.registry import MODELS\n", FAKE)
    assert [(i.imported, i.line, i.where, i.internal, i.file) for i in found] == [
        ("torch", 1, MODULE, False, "certattr/methods/base.py"),
        ("certattr.models.testing", 3, MODULE, True, "certattr/methods/base.py"),  # a decorator runs at import
        ("certattr.models.registry", 5, FUNCTION, True, "certattr/methods/base.py")]


def test_the_checker_sees_computed_names():
    source = "import importlib\ndef __getattr__(name):\n    return importlib.import_module(_LAZY[name], __name__)\n"
    found = read_imports("certattr", source, FAKE, is_package=True)
    assert [(i.imported, i.line, i.where) for i in found] == [("importlib", 1, MODULE), (COMPUTED, 3, FUNCTION)]


def test_the_checker_finds_imports_of_the_facade():
    source = ("import certattr\nfrom certattr import CertConfig\nfrom .. import Gaussian\nfrom .. import models\n"
              "import certattr.engine.config\nfrom certattr.engine import validation\n"
              "def f():\n    from .. import ABSTAIN\n")
    found = read_imports("certattr.methods.base", source, FAKE)
    assert facade_imports(found) == [
        "certattr/methods/base.py:1: certattr.methods.base imports from the facade certattr, module level",
        "certattr/methods/base.py:2: certattr.methods.base imports from the facade certattr, module level",
        "certattr/methods/base.py:3: certattr.methods.base imports from the facade certattr, module level",
        "certattr/methods/base.py:8: certattr.methods.base imports from the facade certattr, inside a function"]
    assert {i.imported for i in found if not i.facade} == {"certattr.models", "certattr.engine.config",
                                                           "certattr.engine.validation"}
    # the facade's own imports (its lazy loading included) are not imports of the facade
    own = read_imports("certattr", "from .engine.config import CertConfig\ndef __getattr__(name):\n"
                                   "    from . import methods\n    from . import __version__\n", FAKE, is_package=True)
    assert not facade_imports(own)
    assert [(i.imported, i.where) for i in lazy_imports(own)] == [("certattr.methods", FUNCTION)]


def test_circles_of_small_graphs():
    graph = {"lrp": {"testing"}, "testing": {"registry"}, "registry": {"lrp"}, "validation": set()}
    assert circles(graph) == [(["lrp", "registry", "testing"], ["lrp", "testing", "registry", "lrp"])]
    assert circles({**graph, "registry": set()}) == []
    assert circles({"a": {"a"}}) == [(["a"], ["a", "a"])]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}) == [(["b", "c", "d"], ["b", "c", "d", "b"])]
    assert circles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []  # a diamond is no circle
    # two circles, and the shortest cycle through the first node of a larger one
    assert circles({"a": {"b"}, "b": {"a", "c"}, "c": {"a"}, "x": {"y"}, "y": {"x"}}) == [
        (["a", "b", "c"], ["a", "b", "a"]), (["x", "y"], ["x", "y", "x"])]


def test_the_layers_of_a_small_structure():
    layers = (("certattr.low",), ("certattr.left", "certattr.right"), ("certattr.high",))
    found = read_sources({"certattr": "", "certattr.low": "", "certattr.low.a": "from ..high import b\n",
                          "certattr.left": "", "certattr.left.c": "", "certattr.right": "",
                          "certattr.right.d": "def f():\n    from ..left import c\n", "certattr.high": "",
                          "certattr.high.b": "from ..low import a\nfrom ..left.c import x\n"})
    assert layer_violations(found, layers) == [
        "certattr/low/a.py:1: certattr.low.a (layer 1, certattr.low) imports certattr.high.b (layer 3, "
        "certattr.high), module level",
        "certattr/right/d.py:2: certattr.right.d (layer 2, certattr.right) imports certattr.left.c (layer 2, "
        "certattr.left), inside a function"]
    graph = package_graph(found, layers)
    assert graph == {"certattr.low": {"certattr.high"}, "certattr.left": set(), "certattr.right": {"certattr.left"},
                     "certattr.high": {"certattr.low", "certattr.left"}}
    assert circles(graph) == [(["certattr.high", "certattr.low"], ["certattr.high", "certattr.low", "certattr.high"])]
    assert layer_of("certattr") is None and layer_of("certattr.lowest", layers) is None


# --- the package's three import circles before issue 21, as fake sources -------------------------------------
def _old_structure(sources: dict[str, str]) -> tuple[list[Import], dict]:
    """(the imports, the module graph) of ``sources`` and of the (empty) packages they are in."""
    packages = {"certattr"} | {a for name in sources for a in ancestors(name)[:-1]}
    modules = {**{p: "" for p in packages}, **sources}
    found = read_sources(modules)
    return found, module_graph(found, modules)


def test_the_checker_flags_the_old_book_and_course_circle():
    """The book built the student notebooks (``build_assignments``) and the course read the book's chapters,
    profiles, root and parameters, both inside functions."""
    found, graph = _old_structure({
        "certattr.engine.config": "DEFAULT = None\n",
        "certattr.book.build": "from ..engine.config import DEFAULT\n\n"
                               "def build_book(profile):\n"
                               "    from ..course.assignments import build_assignments\n"
                               "    return build_assignments(profile)\n",
        "certattr.course.assignments": "def build_assignments(out, profile='smoke'):\n"
                                       "    from ..book.build import CHAPTERS, PROFILES, ROOT, chapter_parameters\n"
                                       "    return chapter_parameters(profile, CHAPTERS[0], root=ROOT)\n",
    })
    assert layer_violations(found) == [
        "certattr/course/assignments.py:2: certattr.course.assignments (layer 5, certattr.course) imports "
        "certattr.book.build (layer 6, certattr.book), inside a function"]
    assert circles(graph) == [(["certattr.book.build", "certattr.course.assignments"],
                               ["certattr.book.build", "certattr.course.assignments", "certattr.book.build"])]
    assert circles(package_graph(found)) == [(["certattr.book", "certattr.course"],
                                              ["certattr.book", "certattr.course", "certattr.book"])]
    assert unlisted_lazy_imports(found) == [
        "certattr/book/build.py:4: certattr.book.build imports certattr.course.assignments inside a function",
        "certattr/course/assignments.py:2: certattr.course.assignments imports certattr.book.build inside a function"]


def test_the_checker_flags_the_old_encodings_and_certificates_circle():
    """The sample cache's encodings took the top-k sets and the norm bound of the two related certificates inside
    functions, and the certificates build their engines (which read the cache) from the encodings."""
    found, graph = _old_structure({
        "certattr.engine.encodings": "import numpy as np\n\n"
                                     "class TopKSet:\n"
                                     "    def __init__(self, tau_frac):\n"
                                     "        from ..certificates.sparsified_smoothgrad import check_fraction\n"
                                     "    def encode(self, maps, size):\n"
                                     "        from ..certificates.sparsified_smoothgrad import sparsify_topk\n\n"
                                     "class BoundedSum:\n"
                                     "    def encode(self, maps, size):\n"
                                     "        from ..certificates.cosine import bound_norm\n",
        "certattr.engine.cache": "from .encodings import RAW, Encoding\n",
        "certattr.engine.smoothing": "from .cache import SampleCache, cache_key\n"
                                     "from .encodings import RAW, certificate_encoding\n",
        "certattr.certificates.sparsified_smoothgrad": "def sparsify_topk(maps, fraction): ...\n\n"
                                                       "def sparsified_smoothgrad(model, image):\n"
                                                       "    from ..engine.encodings import RAW, TopKSet\n"
                                                       "    from ..engine.smoothing import SmoothedAttribution\n",
        "certattr.certificates.cosine": "def bound_norm(g, M, mode): ...\n\n"
                                        "def smooth_uniform(model, image):\n"
                                        "    from ..engine.encodings import BoundedSum\n"
                                        "    from ..engine.smoothing import SmoothedAttribution\n",
    })
    assert layer_violations(found) == [
        "certattr/engine/encodings.py:5: certattr.engine.encodings (layer 1, certattr.engine) imports "
        "certattr.certificates.sparsified_smoothgrad (layer 4, certattr.certificates), inside a function",
        "certattr/engine/encodings.py:7: certattr.engine.encodings (layer 1, certattr.engine) imports "
        "certattr.certificates.sparsified_smoothgrad (layer 4, certattr.certificates), inside a function",
        "certattr/engine/encodings.py:11: certattr.engine.encodings (layer 1, certattr.engine) imports "
        "certattr.certificates.cosine (layer 4, certattr.certificates), inside a function"]
    assert circles(graph) == [(["certattr.certificates.cosine", "certattr.certificates.sparsified_smoothgrad",
                                "certattr.engine.cache", "certattr.engine.encodings", "certattr.engine.smoothing"],
                               ["certattr.certificates.cosine", "certattr.engine.encodings",
                                "certattr.certificates.cosine"])]
    # the circle the cache is on: cache -> encodings -> a certificate -> smoothing -> cache
    assert "certattr.certificates.cosine" in graph["certattr.engine.encodings"]
    assert "certattr.engine.cache" in graph["certattr.engine.smoothing"]
    assert circles(package_graph(found)) == [(["certattr.certificates", "certattr.engine"],
                                              ["certattr.certificates", "certattr.engine", "certattr.certificates"])]
    # the same sources with the certificates' helpers moved into the engine have no circle and no violation
    fixed = [i for i in found if not (i.importer == "certattr.engine.encodings" and i.internal)]
    assert layer_violations(fixed) == []
    assert circles(module_graph(fixed, graph)) == []


def test_the_checker_flags_the_old_certify_and_certificate_circle():
    """certify built Certificates at module level; the certificate took the radius table from certify inside a
    function: a circle inside one package, so no layer is crossed."""
    found, graph = _old_structure({
        "certattr.engine.certify": "import numpy as np\n"
                                   "from .certificate import ABSTAIN, Certificate\n\n"
                                   "def pixel_radius_table(n, sigma, level): ...\n",
        "certattr.engine.certificate": "import numpy as np\n\n"
                                       "class Certificate:\n"
                                       "    def compute_radii(self):\n"
                                       "        from .certify import pixel_radius_table\n",
    })
    assert layer_violations(found) == []
    assert circles(graph) == [(["certattr.engine.certificate", "certattr.engine.certify"],
                               ["certattr.engine.certificate", "certattr.engine.certify",
                                "certattr.engine.certificate"])]
    assert circles(module_graph(found, graph, where=(MODULE,))) == []  # only the function-level import closes it
    assert circles(package_graph(found)) == []
    assert unlisted_lazy_imports(found) == [
        "certattr/engine/certificate.py:5: certattr.engine.certificate imports certattr.engine.certify inside a "
        "function"]


def test_the_allow_list_checks():
    found = read_imports("certattr.cli", "def _certify(args):\n    from .engine.smoothing import X\n"
                                         "    from .engine.files import write_file_set\n",
                         {"certattr", "certattr.cli", "certattr.engine", "certattr.engine.smoothing",
                          "certattr.engine.files"}, is_package=False)
    allowed = {("certattr.cli", "certattr.engine.smoothing"): "heavy", ("certattr.cli", "certattr.book.build"): "gone"}
    assert unlisted_lazy_imports(found, allowed) == [
        "certattr/cli.py:3: certattr.cli imports certattr.engine.files inside a function"]
    assert stale_allowances(found, allowed) == [("certattr.cli", "certattr.book.build")]


def test_loads_heavy_follows_module_level_imports_only():
    found = read_sources({
        "certattr": "", "certattr.methods": "from .gradient import Saliency\n",
        "certattr.methods.gradient": "import torch\nfrom captum.attr import Saliency\n",
        "certattr.engine": "", "certattr.engine.smoothing": "from ..methods import get_method\n",
        "certattr.book": "", "certattr.book.plotting": "def f():\n    import matplotlib.pyplot as plt\n",
    })
    assert loads_heavy("certattr.engine.smoothing", found) == {"captum"}
    assert loads_heavy("certattr.methods", found) == {"captum"}
    assert loads_heavy("certattr.book.plotting", found) == set()  # matplotlib only when a function runs
