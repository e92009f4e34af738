"""Split any network at a module path into body and head: with torch.fx, or with forward hooks as the fallback.

``logits = head(act, *context)`` with ``(act, *context) = body(x)``; ``act`` is the output of the module at the
path (the Final layer), ``context`` whatever else the rest of the network reads from before it (a skip
connection across the split; for the hook fallback, the input itself).

* :func:`fx_split` traces the network with torch.fx and cuts the graph at the one call of that module: the body
  runs once per batch, and the head is a ``GraphModule`` of the operations after the cut, called on the
  activation alone (what the perturbation methods call hundreds of times per map). Modules of torch.nn types
  (and their subclasses, e.g. timm's ``Conv2dSame`` and ``BatchNormAct2d``) are kept as leaves, so the head
  holds the network's own modules (shared, not copied). A ``torch.export`` program is not traced: its own graph
  is cut at the module's output (:mod:`certattr.models.exported`), with the same :func:`cut_graph`.
* :class:`HookBody` / :class:`HookHead` work for any network that calls the module once: the body runs the
  network until the module's output and stops there; the head runs the whole network on the input (its
  context) with a forward hook that substitutes the given activation for the module's output. **Cost**: every
  head call re-runs the body, so the perturbation methods at the Final layer (RISE, Occlusion, AblationCam)
  cost as many full forward passes as they make head calls, instead of head-only passes.
* :func:`gap_linear_of` recognises a head that is global average pooling then one linear layer (dropout,
  flatten and reshapes in between are allowed), which Cam and the closed-form head of the perturbation
  methods need; in a traced graph (torch.nn modules) and in an exported one (ATen operations) alike.
"""
from __future__ import annotations

import difflib
import inspect
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..engine.validation import CertattrError

__all__ = ["LeafTracer", "fx_split", "cut_graph", "ProgramGraph", "program_graph", "program_split", "recorded_paths",
           "HookBody", "HookHead", "TokenGridBody", "TokenGridHead", "gap_linear_of", "head_operations",
           "residual_sums"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _torch_leaf_type(module: nn.Module) -> bool:
    """Is ``module`` an instance of a torch.nn layer type (a subclass included), other than a container?"""
    if isinstance(module, _CONTAINERS):
        return False
    return any(cls.__module__.startswith("torch.nn.modules") and cls not in (nn.Module,)
               for cls in type(module).__mro__)


class LeafTracer(fx.Tracer):
    """torch.fx tracer that keeps ``keep`` (module paths) and every torch.nn layer (subclasses included) as
    single ``call_module`` nodes."""

    def __init__(self, keep: tuple[str, ...] = ()):
        super().__init__()
        self.keep = set(keep)

    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        return qualname in self.keep or super().is_leaf_module(module, qualname) or _torch_leaf_type(module)


def _defaults(net: nn.Module) -> dict:
    """The arguments of ``net.forward`` after the first that have a default value (timm's ViT: ``attn_mask=None``,
    ``is_causal=False``): certattr never gives them, so the trace takes their defaults as constants (traced as
    proxies, ``mask is None`` would be False and the graph would take the other branch)."""
    try:
        parameters = list(inspect.signature(net.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in parameters if p.kind in kinds and p.default is not inspect.Parameter.empty}


def trace(net: nn.Module, keep: tuple[str, ...] = ()) -> fx.GraphModule:
    """``net`` traced with :class:`LeafTracer`, its optional forward arguments at their defaults (raises whatever
    torch.fx raises on untraceable code)."""
    tracer = LeafTracer(keep)
    graph = tracer.trace(net, concrete_args=_defaults(net) or None)
    return fx.GraphModule(tracer.root, graph)


def fx_split(net: nn.Module, path: str) -> tuple[fx.GraphModule, fx.GraphModule, int]:
    """(body, head, number of context tensors) of ``net`` cut after its one call of the module at ``path``.

    ``body(x) -> act`` (or ``(act, *context)``), ``head(act, *context) -> logits``. Raises RuntimeError when
    the module is called other than once in the traced graph, and whatever torch.fx raises on untraceable code.
    A ``torch.export`` program loaded by :func:`certattr.models.exported.load_program` is not traced: its own
    graph is cut at the module's output (:func:`program_split`).
    """
    if program_graph(net) is not None:
        return program_split(net, path)
    gm = trace(net, (path,))
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == path]
    if len(calls) != 1:
        raise RuntimeError(f"the traced network calls {path!r} {len(calls)} times, not once")
    return cut_graph(gm, gm.graph, calls[0])


def _is_batch_size(node: fx.Node) -> bool:
    """Is ``node`` the size of a tensor's first (batch) dimension: ``t.size(0)``, ``aten.sym_size.int(t, 0)``?"""
    if len(node.args) != 2 or node.args[1] != 0 or node.kwargs:
        return False
    return (node.op == "call_method" and node.target == "size") or (
        node.op == "call_function" and node.target is torch.ops.aten.sym_size.int)


# in-place operations of traced (not exported) graphs, and the operations whose result may share the input's memory
_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
_VIEW_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "expand", "contiguous",
                 "view_as", "__getitem__", "narrow", "select", "unflatten", "t"}
_VIEW_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose,
                   operator.getitem, torch.narrow, torch.select}


def _mutated_and_aliased(gm: fx.GraphModule, node: fx.Node) -> tuple[list, list]:
    """(the argument nodes ``node`` writes to in place, the argument nodes its result may alias)."""
    first = [node.args[0]] if node.args and isinstance(node.args[0], fx.Node) else []
    target = node.target
    if isinstance(target, torch._ops.OpOverload):  # an exported graph's ATen operation: its schema says
        schema = target._schema
        written = [a for a, arg in zip(node.args, schema.arguments)
                   if isinstance(a, fx.Node) and arg.alias_info is not None and arg.alias_info.is_write]
        aliased = first if schema.returns and any(r.alias_info is not None for r in schema.returns) else []
        return written, aliased
    if node.op == "call_function":
        if target in _INPLACE_FUNCTIONS:
            return first, first
        return [], first if target in _VIEW_FUNCTIONS else []
    if node.op == "call_method":
        if target.endswith("_") and not target.startswith("__"):
            return first, first
        return [], first if target in _VIEW_METHODS else []
    if node.op == "call_module":
        module = _target_module(gm, node)
        if getattr(module, "inplace", False):
            return first, first
        return [], first if isinstance(module, (nn.Identity, nn.Flatten)) else []
    return [], []


def _guard_inputs(gm: fx.GraphModule) -> None:
    """Insert a copy of every placeholder that an operation of ``gm`` would write to in place (directly or through a
    view), so that calling it never changes the tensors it is given (the perturbation methods reuse them)."""
    aliases = {p: {p} for p in gm.graph.nodes if p.op == "placeholder"}
    written = set()
    for node in gm.graph.nodes:
        mutated, aliased = _mutated_and_aliased(gm, node)
        for p, group in aliases.items():
            if any(a in group for a in aliased):
                group.add(node)
            if any(a in group for a in mutated):
                written.add(p)
    for p in written:
        with gm.graph.inserting_after(p):
            copy = gm.graph.call_method("clone", (p,))
        p.replace_all_uses_with(copy, delete_user_cb=lambda user: user is not copy)
    if written:
        gm.recompile()


def cut_graph(root, graph: fx.Graph, split: fx.Node) -> tuple[fx.GraphModule, fx.GraphModule, int]:
    """(body, head, number of context tensors) of ``graph`` cut after the node ``split`` (the Final layer's
    output); ``root`` holds what its ``get_attr`` and ``call_module`` nodes name (a module, or a dict from those
    names to tensors and modules), and body and head share them.

    The context is every tensor computed from the input before the cut that the head reads (a skip connection);
    the size of a tensor's batch dimension read after the cut is taken from the activation instead (a context
    integer would not follow the methods' batches). The head copies its inputs first where one of its
    operations would write to them in place.
    """
    nodes = list(graph.nodes)
    before = nodes[:nodes.index(split) + 1]
    after = nodes[nodes.index(split) + 1:]
    before_set = set(before)
    depends_on_input = set()
    for n in before:
        if n.op == "placeholder" or any(a in depends_on_input for a in n.all_input_nodes):
            depends_on_input.add(n)
    context, batch_sizes = [], []
    for n in after:
        for a in n.all_input_nodes:
            if a in before_set and a is not split and a in depends_on_input:
                if _is_batch_size(a):
                    if a not in batch_sizes:
                        batch_sizes.append(a)
                elif a not in context:
                    context.append(a)

    body_graph, env = fx.Graph(), {}
    for n in before:
        env[n] = body_graph.node_copy(n, lambda a: env[a])
    body_graph.output((env[split], *(env[c] for c in context)) if context else env[split])

    head_graph = fx.Graph()
    head_env = {split: head_graph.placeholder("activation")}
    for i, c in enumerate(context):
        head_env[c] = head_graph.placeholder(f"context_{i}")
    for b in batch_sizes:
        head_env[b] = head_graph.create_node(b.op, b.target, (head_env[split], 0), name=f"batch_{b.name}")

    def copy(node):  # a node before the cut that does not depend on the input (a parameter, a constant)
        if node not in head_env:
            for a in node.all_input_nodes:
                copy(a)
            head_env[node] = head_graph.node_copy(node, lambda a: head_env[a])
        return head_env[node]

    for n in after:
        for a in n.all_input_nodes:
            if a in before_set:
                copy(a)
        head_env[n] = head_graph.node_copy(n, lambda a: head_env[a])
    body, head = fx.GraphModule(root, body_graph), fx.GraphModule(root, head_graph)
    for part in (body, head):
        part.graph.eliminate_dead_code()
        part.recompile()
    _guard_inputs(head)
    return body, head, len(context)


# --- torch.export programs (made by certattr.models.exported.program_network) ---------------------------------
PROGRAM_KEY = "_certattr_program_graph"  #: where a program network keeps its flat graph (in the module's __dict__)


@dataclass
class ProgramGraph:
    """The flat graph of an exported program, kept beside its unflattened module."""

    graph: fx.Graph  #: one placeholder (the normalized images (B, C, S, S)), ATen operations, the logits out
    name: str  #: the program's name in messages (its file name)
    #: what the graph reads (``get_attr``) that the unflattened module does not hold under the same name (lifted
    #: constants), taken from the program's own module
    extra: dict = field(default_factory=dict)


def lookup(obj, target: str):
    """The attribute at the dotted path ``target`` of ``obj``, or None."""
    for part in target.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return None
    return obj


def program_graph(net) -> ProgramGraph | None:
    """The flat graph kept by :func:`certattr.models.exported.program_network`, or None for any other network."""
    return getattr(net, "__dict__", {}).get(PROGRAM_KEY)


def module_paths(node: fx.Node) -> set[str]:
    """The module paths an exported graph's operation ran in (its ``nn_module_stack``: ``layer4``, ``layer4.1``...)."""
    return {value[0] for value in node.meta.get("nn_module_stack", {}).values()
            if isinstance(value, tuple) and value and isinstance(value[0], str)}


def recorded_paths(program: ProgramGraph) -> list[str]:
    """The module paths the program's operations were recorded in (those it can be cut at), in graph order."""
    seen = {}
    for node in program.graph.nodes:
        for path in sorted(module_paths(node)):
            if path:
                seen.setdefault(path, None)
    return list(seen)


def not_found(program: ProgramGraph, path: str) -> CertattrError:
    """The one-line error for a Final layer ``path`` of which ``program`` records no operation: what was looked for
    and the paths that can be given (close matches, the top-level ones)."""
    paths = recorded_paths(program)
    if not paths:
        return CertattrError(f"final_layer={path!r} cannot be found in the program {program.name}: its graph records "
                             f"no module paths (nn_module_stack), so it cannot be cut at a layer; export it with "
                             f"torch.export.export from the nn.Module")
    close = difflib.get_close_matches(path, paths, n=3)
    top = [p for p in paths if "." not in p]
    allowed = f"{'did you mean ' + ' or '.join(map(repr, close)) + '? ' if close else ''}its top-level ones are " \
              f"{', '.join(top)}"
    return CertattrError(f"final_layer={path!r} cannot be found in the program {program.name}: none of its operations "
                         f"was recorded in a module at that path (an identity or a module never called records none); "
                         f"give a module path that records operations: {allowed}")


def program_split(net: nn.Module, path: str) -> tuple[fx.GraphModule, fx.GraphModule, int]:
    """(body, head, number of context tensors) of the program network ``net`` cut at the output of the module at
    ``path``, as :func:`certattr.models.split.fx_split`: ``body(x) -> act`` or ``(act, *context)`` with x the
    normalized images (B, C, S, S) and act (B, C', h, w) (or tokens (B, N, D)); ``head(act, *context) -> logits``
    (B, classes). Raises CertattrError when no operation was recorded at ``path`` and RuntimeError when the module
    gives the rest of the program other than one tensor or the program takes other than one input."""
    program = program_graph(net)
    if program is None:
        raise RuntimeError(f"{type(net).__name__} is not a program network (certattr.models.exported.program_network)")
    graph = program.graph
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise RuntimeError(f"the program {program.name} takes {len(inputs)} inputs, not one image tensor")
    inside = [n for n in graph.nodes if path in module_paths(n)]
    if not inside:
        raise not_found(program, path)
    members = set(inside)
    outputs = [n for n in inside if any(user not in members for user in n.users)]
    if len(outputs) != 1:
        raise RuntimeError(f"the operations of {path!r} give {len(outputs)} values to the rest of the program "
                           f"{program.name}, not one tensor")
    split = outputs[0]
    order = {n: i for i, n in enumerate(graph.nodes)}
    if order[inside[-1]] > order[split]:
        raise RuntimeError(f"operations of {path!r} run after its output in the program {program.name}")
    device = next((t.device for t in net.state_dict().values()), torch.device("cpu"))
    root = {}
    for node in graph.nodes:
        if node.op in ("get_attr", "call_module"):
            found = lookup(net, node.target)
            if found is None:
                found = program.extra[node.target]
                found = found.to(device) if isinstance(found, (torch.Tensor, nn.Module)) else found
            root[node.target] = found
    body, head, n_context = cut_graph(root, graph, split)
    for part in (body, head):  # their modules are containers of the parameters: in the network's mode, not train
        part.train(net.training)
    return body, head, n_context


class _Stop(Exception):
    """Raised by HookBody's hook: the rest of the network is not needed."""


class HookBody(nn.Module):
    """The network up to the output of ``layer``; returns ``(act, x)`` (the input is the head's context)."""

    def __init__(self, net: nn.Module, layer: nn.Module):
        super().__init__()
        self.net, self.layer = net, layer

    def forward(self, x: torch.Tensor):
        captured = []

        def stop(module, args, output):
            captured.append(output)
            raise _Stop

        handle = self.layer.register_forward_hook(stop)
        try:
            self.net(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError("the network's forward pass did not call its Final layer")
        return captured[0], x


class HookHead(nn.Module):
    """The network from ``layer`` on: runs the whole network on ``x`` with ``layer``'s output replaced by
    ``act`` (the body is re-run at every call; see the module docstring)."""

    def __init__(self, net: nn.Module, layer: nn.Module):
        super().__init__()
        self.net, self.layer = net, layer

    def forward(self, act: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        handle = self.layer.register_forward_hook(lambda module, args, output: act)
        try:
            return self.net(x)
        finally:
            handle.remove()


class TokenGridBody(nn.Module):
    """A body whose activation is tokens (B, N, D): returns the grid (B, D, s, s) of the last N - ``drop``
    tokens (s² = N - drop), and the ``drop`` leading tokens (B, drop, D) first in the context."""

    def __init__(self, body: nn.Module, drop: int):
        super().__init__()
        self.body, self.drop = body, drop

    def forward(self, x: torch.Tensor):
        out = self.body(x)
        tokens, context = (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, ())
        grid = tokens[:, self.drop:]
        side = int(round(grid.shape[1] ** 0.5))
        grid = grid.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        return (grid, tokens[:, :self.drop], *context)


class TokenGridHead(nn.Module):
    """The head of a token layer, called on the grid (B, D, s, s) and the dropped leading tokens."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, grid: torch.Tensor, leading: torch.Tensor, *context) -> torch.Tensor:
        tokens = torch.cat([leading, grid.flatten(2).transpose(1, 2)], dim=1)
        return self.head(tokens, *context)


# --- what the head does ---------------------------------------------------------------------------------
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, F.dropout, torch.Tensor.flatten}
_SHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "contiguous", "size", "dim"}
_SHAPE_MODULES = (nn.Flatten, nn.Dropout, nn.Identity)
# the same in an exported graph (ATen operations): reshapes, copies, sizes, and dropout (exported in eval mode, its
# train flag is False and it returns its input)
_aten = torch.ops.aten
_SHAPE_ATEN = {_aten.flatten.using_ints, _aten.view.default, _aten.reshape.default, _aten._unsafe_view.default,
               _aten.squeeze.dim, _aten.squeeze.dims, _aten.squeeze.default, _aten.clone.default, _aten.alias.default,
               _aten.detach.default, _aten.sym_size.int, _aten.contiguous.default}
_POOL_ATEN = {_aten.adaptive_avg_pool2d.default, _aten._adaptive_avg_pool2d.default}


def _target_module(gm: fx.GraphModule, node: fx.Node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _node_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(_target_module(gm, node)).__name__
    if node.op == "call_method":
        return f".{node.target}()"
    if isinstance(node.target, torch._ops.OpOverload):
        return node.target.overloadpacket.__name__  # aten.layer_norm.default -> layer_norm
    return getattr(node.target, "__name__", str(node.target))


def head_operations(head: fx.GraphModule) -> list[str]:
    """The head's operations in order, by name (modules by their type): for messages."""
    return [_node_name(head, n) for n in head.graph.nodes if n.op in ("call_module", "call_function", "call_method")]


def _arg(node: fx.Node, index: int, name: str):
    return node.kwargs.get(name, node.args[index] if len(node.args) > index else None)


def _is_global_mean(gm: fx.GraphModule, node: fx.Node) -> bool:
    module = _target_module(gm, node)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return module.output_size in (1, (1, 1))
    if node.target is _aten.mean.dim or (node.op in ("call_method", "call_function")
                                         and getattr(node.target, "__name__", node.target) == "mean"):
        dims = _arg(node, 1, "dim")
        if isinstance(dims, (tuple, list)):
            return sorted(d % 4 for d in dims) == [2, 3]
    if node.op == "call_function" and (node.target is F.adaptive_avg_pool2d or node.target in _POOL_ATEN):
        size = _arg(node, 1, "output_size")
        return size in (1, (1, 1), [1, 1])
    return False


def _is_shape_only(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(_target_module(gm, node), _SHAPE_MODULES)
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    if node.op == "call_function":
        if node.target is _aten.dropout.default:
            return _arg(node, 2, "train") is False
        return node.target in _SHAPE_FUNCTIONS or node.target in _SHAPE_ATEN or node.target is getattr
    return False


def _is_identity(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Does ``node`` return its input unchanged (same values and shape)?"""
    if node.op == "call_module":
        return isinstance(_target_module(gm, node), (nn.Identity, nn.Dropout))
    if node.op == "call_method":
        return node.target in ("contiguous", "clone")
    if node.target is _aten.dropout.default:
        return _arg(node, 2, "train") is False
    if node.target is F.dropout:
        return _arg(node, 2, "training") is False
    return node.target in (_aten.clone.default, _aten.alias.default, _aten.detach.default)


def _attribute(gm: fx.GraphModule, node) -> nn.Parameter | None:
    """The parameter a ``get_attr`` node reads (None for anything else, a plain tensor included)."""
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    try:
        value = gm.get_parameter(node.target)
    except AttributeError:
        return None
    return value if isinstance(value, nn.Parameter) else None


def _linear_of(gm: fx.GraphModule, node: fx.Node) -> nn.Linear | None:
    """The linear layer ``node`` applies: an nn.Linear module, or an exported ``aten.linear`` of two parameters,
    made into an nn.Linear that shares them (so the closed-form head reads the network's own weights)."""
    module = _target_module(gm, node)
    if isinstance(module, nn.Linear):
        return module
    if node.target is not _aten.linear.default:
        return None
    weight, bias = _attribute(gm, _arg(node, 1, "weight")), _arg(node, 2, "bias")
    if weight is None or weight.dim() != 2 or (bias is not None and _attribute(gm, bias) is None):
        return None
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta").train(gm.training)
    linear.weight = weight
    if bias is not None:
        linear.bias = _attribute(gm, bias)
    return linear


def gap_linear_of(head: fx.GraphModule) -> nn.Linear | None:
    """The linear layer of a head that computes ``linear(mean_hw(act))`` (up to flatten, reshapes, dropout and
    identities), or None. Structural only: the caller also checks the values (see ``wrap``). Works on traced
    graphs (torch.nn modules and functions) and on exported ones (ATen operations; the nn.Linear returned then
    shares the graph's parameters). Operations that do not read the activation (on parameters only) are skipped."""
    pooled, linear = False, None
    placeholders = [n for n in head.graph.nodes if n.op == "placeholder"]
    reads_input = set(placeholders)
    for node in head.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if not any(a in reads_input for a in node.all_input_nodes):
            continue  # computed from parameters and constants only
        reads_input.add(node)
        if linear is not None:
            if _is_identity(head, node):
                continue  # timm's ClassifierHead ends in an identity 'flatten'
            return None  # anything else after the linear layer
        if _is_global_mean(head, node):
            if pooled:
                return None
            pooled = True
        elif _linear_of(head, node) is not None:
            if not pooled:
                return None
            linear = _linear_of(head, node)
        elif not _is_shape_only(head, node):
            return None
    return linear if pooled and len(placeholders) == 1 else None


_ADDS = {operator.add, operator.iadd, torch.add}


def residual_sums(net: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Every sum of two computed tensors in ``net``'s traced graph (a residual connection written as ``a + b``):
    (where, the modules it lies in, outermost first). Raises whatever torch.fx raises on untraceable code."""
    gm = trace(net)
    found = []
    computed = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in computed for a in node.all_input_nodes):
            computed.add(node)
        if node.op == "call_function" and node.target in _ADDS or (node.op == "call_method" and node.target in ("add", "add_")):
            operands = [a for a in node.args[:2] if isinstance(a, fx.Node) and a in computed]
            if len(operands) == 2:
                paths = list(node.meta.get("nn_module_stack", {}))
                modules = [net.get_submodule(p.split("@")[0]) for p in paths if p.split("@")[0]]
                found.append((paths[-1].split("@")[0] if paths else "", modules))
    return found
