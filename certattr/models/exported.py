"""``torch.export`` programs as certattr networks, cut at their Final layer without tracing.

An exported program (a ``.pt2`` file from ``torch.export.save``) is already a graph of ATen operations, each
recorded with the stack of modules it ran in (``node.meta["nn_module_stack"]``). :func:`program_network` turns one
into a network with two faces:

* the **unflattened module** (``torch.export.unflatten``): the module paths of the network it was exported from
  (``layer4``, ``blocks.6``: what ``--final-layer`` names, what forward hooks attach to, what
  :func:`~certattr.models.sources.guess_final_layer` reads), and the whole-network passes (Input layer), run as
  generated code rather than through ``torch.fx.Interpreter`` where that gives the same output;
* the program's **flat graph**, kept beside it (:func:`program_graph`), which :func:`program_split` cuts at the
  output of the Final layer's operations: the body is the graph up to that output, run once per batch; the
  head is the graph after it, run alone on the activation (B, C, h, w), so RISE, Occlusion and AblationCam at
  the Final layer cost head passes, as for a traced module (:func:`certattr.models.split.fx_split` calls it for
  such networks). Body and head read the unflattened module's own parameters and buffers (shared, not copied).

A head that is global average pooling then one linear layer is recognised in the exported graph too
(:func:`certattr.models.split.gap_linear_of`), so Cam is defined and the perturbation methods apply it in closed
form, as for the presets.

Which node is the Final layer's output: the one operation recorded in the module at that path (or a module
inside it) whose value is read by an operation outside it. A module that records no operation (an identity,
a module never called) cannot be cut at: :func:`check_final_layer` says so in one line and names the paths
that can.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn

from .split import PROGRAM_KEY, ProgramGraph, lookup, module_paths, not_found, program_graph, program_split

#: ProgramGraph, program_graph and program_split are defined in .split (its fx_split cuts a program, and it imports
#: nothing of this module) and are part of this module's API
__all__ = ["ProgramGraph", "load_program", "program_network", "program_graph", "program_split", "check_final_layer",
           "train_mode_operations"]

def program_network(program: "torch.export.ExportedProgram", name: str = "program") -> nn.Module:
    """The unflattened module of ``program`` with the program's flat graph kept beside it (see the module
    docstring); ``name`` is what messages call it."""
    net = torch.export.unflatten(program)
    flat = program.module()
    graph = fx.Graph()
    out = graph.graph_copy(flat.graph, {})
    if isinstance(out, (tuple, list)) and len(out) == 1:  # one output leaf: the logits, not a 1-tuple of them
        out = out[0]
    graph.output(out)
    targets = {n.target for n in graph.nodes if n.op in ("get_attr", "call_module")}
    extra = {t: lookup(flat, t) for t in targets if lookup(net, t) is None}
    net.__dict__[PROGRAM_KEY] = ProgramGraph(graph, name, extra)
    _run_as_code(net, graph)
    return net


def _example(graph: fx.Graph) -> torch.Tensor | None:
    """A seeded random input (2, C, H, W) of the graph's one input, from its recorded shape; None if unknown."""
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    value = inputs[0].meta.get("val") if len(inputs) == 1 else None
    if not isinstance(value, torch.Tensor) or value.dim() < 1 or not value.dtype.is_floating_point:
        return None
    shape = [2] + [d if isinstance(d, int) else None for d in value.shape[1:]]
    if None in shape:
        return None
    return torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=value.dtype)


def _run_as_code(net: nn.Module, graph: fx.Graph) -> bool:
    """Run the unflattened module's graphs as generated Python code instead of through ``torch.fx.Interpreter``
    (the same operations without the interpreter's cost per operation: RegNetY-002, 128x128, one image, 2 CPU
    threads: 18 ms interpreted, 6.3 ms as code, 5.4 ms for the module), where that gives the interpreter's output
    bit for bit on an example input; otherwise (torch's generated code fails on a module called twice) leave the
    interpreter. Returns whether the code runs."""
    switches = [m for m in net.modules() if hasattr(m, "_run_with_interpreter")]
    example = _example(graph)
    if example is None or not switches:
        return False
    try:
        with torch.no_grad():
            reference = net(example)
            for module in switches:
                module._run_with_interpreter = False
            same = torch.equal(net(example), reference)
    except Exception:  # the generated code of a module called twice names a submodule that does not exist
        same = False
    if not same:
        for module in switches:
            module._run_with_interpreter = True
    return same


def load_program(path) -> nn.Module:
    """:func:`program_network` of the program saved at ``path`` (``torch.export.save``). Raises whatever
    ``torch.export.load`` raises on a file that is not such a program."""
    return program_network(torch.export.load(str(path)), Path(path).name)


def check_final_layer(net: nn.Module, path: str) -> None:
    """Raise a one-line CertattrError when the program network ``net`` records no operation at module ``path``
    (what was looked for, and the paths that can be given instead); nothing for other networks."""
    program = program_graph(net)
    if program is not None and not any(path in module_paths(n) for n in program.graph.nodes):
        raise not_found(program, path)


_aten = torch.ops.aten
#: ATen operations whose 6th argument says "training" (batch statistics) and whose 3rd says "train" (dropout)
_BATCH_NORMS = {_aten.batch_norm.default, _aten.native_batch_norm.default, _aten._native_batch_norm_legit.default,
                _aten._native_batch_norm_legit_functional.default}
_DROPOUTS = {_aten.dropout.default, _aten.native_dropout.default, _aten.feature_dropout.default,
             _aten.alpha_dropout.default, _aten.feature_alpha_dropout.default}


def train_mode_operations(net: nn.Module) -> list[str]:
    """The operations of the program network ``net`` that an export in train mode fixed in its graph (BatchNorm
    with batch statistics, dropout with p > 0 switched on), which ``.eval()`` cannot change; empty for other
    networks."""
    program = program_graph(net)
    found = []
    for node in program.graph.nodes if program is not None else ():
        if node.target in _BATCH_NORMS and len(node.args) > 5 and node.args[5] is True:
            found.append("BatchNorm with batch statistics")
        elif node.target in _DROPOUTS and len(node.args) > 2 and node.args[2] is True and node.args[1] > 0:
            found.append("dropout")
    return sorted(set(found))
