"""Split any network at a module path into body and head: with torch.fx, or with forward hooks as the fallback.

``logits = head(act, *context)`` with ``(act, *context) = body(x)``; ``act`` is the output of the module at the
path (the Final layer), ``context`` whatever else the rest of the network reads from before it (a skip
connection across the split; for the hook fallback, the input itself).

* :func:`fx_split` traces the network with torch.fx and cuts the graph at the one call of that module: the body
  runs once per batch, and the head is a ``GraphModule`` of the operations after the cut, called on the
  activation alone (what the perturbation methods call hundreds of times per map). Modules of torch.nn types
  (and their subclasses, e.g. timm's ``Conv2dSame`` and ``BatchNormAct2d``) are kept as leaves, so the head
  holds the network's own modules (shared, not copied).
* :class:`HookBody` / :class:`HookHead` work for any network that calls the module once: the body runs the
  network until the module's output and stops there; the head runs the whole network on the input (its
  context) with a forward hook that substitutes the given activation for the module's output. **Cost**: every
  head call re-runs the body, so the perturbation methods at the Final layer (RISE, Occlusion, AblationCam)
  cost as many full forward passes as they make head calls, instead of head-only passes.
* :func:`gap_linear_of` recognises a head that is global average pooling then one linear layer (dropout,
  flatten and reshapes in between are allowed), which Cam and the closed-form head of the perturbation
  methods need.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LeafTracer", "fx_split", "HookBody", "HookHead", "TokenGridBody", "TokenGridHead", "gap_linear_of",
           "head_operations", "residual_sums"]

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


def trace(net: nn.Module, keep: tuple[str, ...] = ()) -> fx.GraphModule:
    """``net`` traced with :class:`LeafTracer` (raises whatever torch.fx raises on untraceable code)."""
    tracer = LeafTracer(keep)
    graph = tracer.trace(net)
    return fx.GraphModule(tracer.root, graph)


def fx_split(net: nn.Module, path: str) -> tuple[fx.GraphModule, fx.GraphModule, int]:
    """(body, head, number of context tensors) of ``net`` cut after its one call of the module at ``path``.

    ``body(x) -> act`` (or ``(act, *context)``), ``head(act, *context) -> logits``. Raises RuntimeError when
    the module is called other than once in the traced graph, and whatever torch.fx raises on untraceable code.
    """
    gm = trace(net, (path,))
    nodes = list(gm.graph.nodes)
    calls = [n for n in nodes if n.op == "call_module" and n.target == path]
    if len(calls) != 1:
        raise RuntimeError(f"the traced network calls {path!r} {len(calls)} times, not once")
    split = calls[0]
    before = nodes[:nodes.index(split) + 1]
    after = nodes[nodes.index(split) + 1:]
    before_set = set(before)
    depends_on_input = set()
    for n in before:
        if n.op == "placeholder" or any(a in depends_on_input for a in n.all_input_nodes):
            depends_on_input.add(n)
    context = []
    for n in after:
        for a in n.all_input_nodes:
            if a in before_set and a is not split and a in depends_on_input and a not in context:
                context.append(a)

    body_graph, env = fx.Graph(), {}
    for n in before:
        env[n] = body_graph.node_copy(n, lambda a: env[a])
    body_graph.output((env[split], *(env[c] for c in context)) if context else env[split])

    head_graph = fx.Graph()
    head_env = {split: head_graph.placeholder("activation")}
    for i, c in enumerate(context):
        head_env[c] = head_graph.placeholder(f"context_{i}")

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
    body, head = fx.GraphModule(gm, body_graph), fx.GraphModule(gm, head_graph)
    for part in (body, head):
        part.graph.eliminate_dead_code()
        part.recompile()
    return body, head, len(context)


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


def _target_module(gm: fx.GraphModule, node: fx.Node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _node_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(_target_module(gm, node)).__name__
    if node.op == "call_method":
        return f".{node.target}()"
    return getattr(node.target, "__name__", str(node.target))


def head_operations(head: fx.GraphModule) -> list[str]:
    """The head's operations in order, by name (modules by their type): for messages."""
    return [_node_name(head, n) for n in head.graph.nodes if n.op in ("call_module", "call_function", "call_method")]


def _is_global_mean(gm: fx.GraphModule, node: fx.Node) -> bool:
    module = _target_module(gm, node)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return module.output_size in (1, (1, 1))
    if node.op in ("call_method", "call_function") and getattr(node.target, "__name__", node.target) == "mean":
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if isinstance(dims, (tuple, list)):
            return sorted(d % 4 for d in dims) == [2, 3]
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.kwargs.get("output_size", node.args[1] if len(node.args) > 1 else None)
        return size in (1, (1, 1))
    return False


def _is_shape_only(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(_target_module(gm, node), _SHAPE_MODULES)
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    if node.op == "call_function":
        return node.target in _SHAPE_FUNCTIONS or node.target is getattr
    return False


def gap_linear_of(head: fx.GraphModule) -> nn.Linear | None:
    """The linear layer of a head that computes ``linear(mean_hw(act))`` (up to flatten, reshapes, dropout and
    identities), or None. Structural only: the caller also checks the values (see ``wrap``)."""
    pooled, linear = False, None
    for node in head.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if linear is not None:
            return None  # anything after the linear layer
        if _is_global_mean(head, node):
            if pooled:
                return None
            pooled = True
        elif isinstance(_target_module(head, node), nn.Linear):
            if not pooled:
                return None
            linear = _target_module(head, node)
        elif not _is_shape_only(head, node):
            return None
    placeholders = [n for n in head.graph.nodes if n.op == "placeholder"]
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
