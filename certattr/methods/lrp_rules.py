"""LRP's rules and composite, the zennit machinery behind :class:`certattr.methods.lrp.LRP` (imported at
its first call, so that ``import certattr`` does not load zennit and torchvision).

The rules are zennit's, but certattr wires them (:class:`RelayedRule`): autograd runs each rule once and
no ordinary backward, and ZPlus, ZBox and Norm-through-a-sum take shortcuts that give the same relevance
with fewer passes (each tested against zennit's own hooks). On 2 CPU cores that makes LRP 2.3-4x
faster than zennit's hooks and brings it near its bound: ZPlus needs the model's convolutions three
times (forward, with W+, transposed), where the gradient needs them twice.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite
from zennit.layer import Sum
from zennit.core import BasicHook, ParamMod, RemovableHandleList
from zennit.rules import Epsilon, Norm, Pass, ZBox, ZPlus
from zennit.types import Activation, AvgPool, BatchNorm, Convolution

from ..models.canonizers import canonizers_for


class RelayedRule:
    """A zennit rule, wired so that autograd runs only the rule.

    zennit's hooks let autograd compute each layer's ordinary gradient and then replace it with the rule's
    relevance: one wasted backward pass per layer. Here the layer runs on a detached copy of its input and
    its output is returned through :class:`_Relay`, whose backward *is* the rule: the relevance of the
    layer's input from the relevance of its output, computed with the rule's own modifiers, mapper and
    reducer (zennit's ``BasicHook`` recipe), or passed through unchanged for ``Pass`` (then the input is
    neither kept nor copied). Same relevance as zennit's wiring (tested), about half the work. The rule's
    modified parameters (W+ and b+ for ZPlus) are made once per composite context, not at every call as
    zennit's ``ParamMod`` does. In-place activations run out of place while hooked (x and the relays' views
    must stay intact).

    Subclasses compute the frequent rules with fewer passes: :class:`RelayedZPlus`, :class:`RelayedZBox`,
    :class:`RelayedNorm`.
    """

    def __init__(self, rule):
        self.rule = rule
        self._params: dict = {}

    def copy(self):
        return type(self)(self.rule.copy())

    @property
    def passes_through(self) -> bool:
        return not isinstance(self.rule, BasicHook)

    def term_params(self, module: nn.Module, i: int) -> dict:
        """``module``'s own parameters as the rule's i-th parameter modifier makes them (cached while the
        parameters are unchanged)."""
        key = tuple((p.data_ptr(), p._version) for p in module.parameters(recurse=False))
        cached = self._params.get(i)
        if cached is None or cached[0] != key:
            with ParamMod.ensure(self.rule.param_modifiers[i])(module) as modified:
                params = {name: None if p is None else nn.Parameter(p.detach(), requires_grad=False)
                          for name, p in modified._parameters.items()}  # constants of the rule
            cached = self._params[i] = (key, params)
        return cached[1]

    #: does :meth:`relevance` use the layer's own output (kept for the backward)?
    needs_output = False

    def relevance(self, module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, output=None) -> torch.Tensor:
        """The relevance of the layer's input ``x`` from the relevance ``grad_out`` of its output."""
        rule, inputs, outputs = self.rule, [], []
        with torch.enable_grad():
            for i, modify_input in enumerate(rule.input_modifiers):
                inputs.append(modify_input(x).requires_grad_())
                with _parameters_swapped(module, self.term_params(module, i)):
                    outputs.append(rule.output_modifiers[i](module.forward(inputs[-1])))
            gradients = torch.autograd.grad(outputs, inputs, grad_outputs=rule.gradient_mapper(grad_out, outputs))
        return rule.reducer(inputs, gradients)

    def register(self, module: nn.Module) -> RemovableHandleList:
        if self.passes_through:  # the input is not needed in the backward: neither kept nor copied
            relevance = None
        else:
            def relevance(x, grad_out, output):
                return self.relevance(module, x, grad_out, output)

        stack = []

        def pre_forward(module, args):
            stack.append(args[0])
            return (args[0].detach(), *args[1:])

        def post_forward(module, args, output):
            x = stack.pop()
            if not x.requires_grad:
                return output
            return _Relay.apply(x, output.detach(), relevance, self.needs_output)

        handles = [module.register_forward_pre_hook(pre_forward), module.register_forward_hook(post_forward)]
        if getattr(module, "inplace", False):  # out of place while hooked: x and the relays' views stay intact
            module.inplace = False
            handles.append(_Restore(module, "inplace", True))
        return RemovableHandleList(handles)


class _Restore:
    """A removable handle that sets ``module.<name>`` back to ``value``."""

    def __init__(self, module: nn.Module, name: str, value):
        self.module, self.name, self.value = module, name, value

    def remove(self):
        setattr(self.module, self.name, self.value)


class RelayedZPlus(RelayedRule):
    """ZPlus, relayed, with less work than zennit's (the same relevance up to float summation order).

    ZPlus sums two terms, x+ through (W+, b+) and x- through (W-, 0):

    * after a ReLU/ReLU6 the input has no negative part and the second term is exactly zero: skipped;
    * otherwise both terms run as one convolution of [x+, x-] with [W+, W-] stacked along the input
      channels (per group), forward and transposed: on EfficientNet-Lite0's thin expansion convolutions
      2-3x faster than two convolutions.

    Both terms are non-negative, so the stabilized denominator is z + eps unless the convolution algorithm
    rounds below zero (then zennit's sign-aware stabilizer is used)."""

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = epsilon
        super().__init__(ZPlus(stabilizer=stabilizer(epsilon)))

    def copy(self):
        return RelayedZPlus(self.epsilon)

    def terms(self, x: torch.Tensor) -> range:
        return range(1) if bool(x.amin() >= 0) else range(2)  # amin: min() copies a channels_last tensor first

    def relevance(self, module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, output=None) -> torch.Tensor:
        one_term = len(self.terms(x)) == 1
        if not one_term and not isinstance(module, nn.Conv2d):
            return super().relevance(module, x, grad_out)  # zennit's two modified passes
        if one_term:
            term_input, params = x, self.term_params(module, 0)
        else:
            term_input, params = _signed_parts(x, module.groups), self.stacked_params(module)
        with torch.enable_grad():
            term_input.requires_grad_()
            with _parameters_swapped(module, params):
                z = module.forward(term_input)
            detached = z.detach()
            denominator = detached + self.epsilon if bool(detached.amin() >= 0) else stabilizer(self.epsilon)(detached)
            scaled = torch.div(grad_out, denominator, out=denominator)
            (gradient,) = torch.autograd.grad(z, term_input, scaled)
        if one_term:
            return gradient.mul_(x)
        parts = gradient.mul_(term_input.detach())
        return parts.view(x.shape[0], module.groups, 2, -1, *x.shape[2:]).sum(dim=2).view_as(x)

    def stacked_params(self, module: nn.Module) -> dict:
        """{weight: [W+, W-] along the input channels, bias: b+}: both terms as one convolution."""
        positive, negative = self.term_params(module, 0), self.term_params(module, 1)
        cached = self._params.get("stacked")
        if cached is None or cached[0] is not positive:
            weight = torch.cat([positive["weight"], negative["weight"]], dim=1)
            cached = self._params["stacked"] = (positive, {"weight": nn.Parameter(weight, requires_grad=False),
                                                           "bias": positive.get("bias")})
        return cached[1]


def _signed_parts(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[x+, x-] stacked along the channels within each of ``groups`` channel groups: (B, 2C, ...)."""
    batch, channels = x.shape[:2]
    grouped = x.reshape(batch, groups, channels // groups, *x.shape[2:])
    parts = x.new_empty(batch, groups, 2, channels // groups, *x.shape[2:])
    torch.clamp(grouped, min=0, out=parts[:, :, 0])
    torch.clamp(grouped, max=0, out=parts[:, :, 1])
    return parts.view(batch, 2 * channels, *x.shape[2:])


class RelayedZBox(RelayedRule):
    """ZBox on the first convolution, relayed: x (W^T s) - low (W+^T s) - high (W-^T s) with
    s = R / stab(z), z = (W x + b) - (W+ low + b+) - (W- high + b-), as zennit's ZBox, with less work:

    * W x + b is the layer's own output in the forward pass (not computed again);
    * the bound terms are the same for every image: computed once, at batch 1;
    * the three transposed convolutions run as one over the three weights stacked along the input
      channels (on a 3-channel image that costs about as much as one of them).

    ``low`` and ``high`` are (1, C, 1, 1) or (1, C, H, W) bounds in the layer's input space."""

    needs_output = True

    def __init__(self, low: torch.Tensor, high: torch.Tensor, epsilon: float = 1e-6):
        self.low, self.high, self.epsilon = low, high, epsilon
        self._bounds: dict = {}
        super().__init__(ZBox(low, high, stabilizer=stabilizer(epsilon)))

    def copy(self):
        return RelayedZBox(self.low, self.high, self.epsilon)

    def relevance(self, module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, output=None) -> torch.Tensor:
        if getattr(module, "groups", 1) != 1 or output is None:
            return super().relevance(module, x, grad_out)
        channels = x.shape[1]
        low, high = (bound.expand(1, *x.shape[1:]) for bound in (self.low, self.high))
        z = output - self.bound_outputs(module, low, high)
        denominator = stabilizer(self.epsilon)(z)
        scaled = torch.div(grad_out, denominator, out=denominator)
        gradients = self.stacked_input_gradient(module, scaled, x.shape).split(channels, dim=1)
        return x * gradients[0] - (low * gradients[1] + high * gradients[2])

    def bound_outputs(self, module: nn.Module, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """(W+ low + b+) + (W- high + b-), (1, C_out, h, w)."""
        key = (tuple(low.shape), low.device, low.dtype)
        if key not in self._bounds:
            with torch.no_grad():
                with _parameters_swapped(module, self.term_params(module, 1)):
                    positive = module.forward(low)
                with _parameters_swapped(module, self.term_params(module, 2)):
                    negative = module.forward(high)
            self._bounds[key] = positive + negative
        return self._bounds[key]

    def stacked_input_gradient(self, module: nn.Module, grad_out: torch.Tensor, input_shape) -> torch.Tensor:
        """[W^T g, W+^T g, W-^T g] along the channels, (B, 3C, H, W): one transposed convolution."""
        weight = torch.cat([self.term_params(module, i)["weight"] for i in range(3)], dim=1)
        stacked_shape = (input_shape[0], 3 * input_shape[1], *input_shape[2:])
        if _plain_conv(module):
            # as torch.nn.grad.conv2d_input, but a contiguous stand-in for the input (an expanded one, as
            # there, makes oneDNN's kernel about 1.4x slower on CPU); its values are not read
            stand_in = grad_out.new_empty(stacked_shape)
            return torch.ops.aten.convolution_backward(
                grad_out, stand_in, weight, None, module.stride, module.padding, module.dilation, False,
                [0] * len(module.stride), module.groups, [True, False, False])[0]
        # any other convolution module (timm's Conv2dSame pads in its forward): the vector-Jacobian product
        # of its forward with the stacked weight (linear in the input: the probe's values do not matter)
        with torch.enable_grad(), _parameters_swapped(module, {"weight": nn.Parameter(weight, requires_grad=False),
                                                               "bias": None}):
            probe = grad_out.new_zeros(stacked_shape, requires_grad=True)
            (gradient,) = torch.autograd.grad(module.forward(probe), probe, grad_out)
        return gradient


def _plain_conv(module: nn.Module) -> bool:
    """An nn.Conv2d computing exactly F.conv2d(x, weight, bias, stride, padding, dilation, groups)."""
    return (type(module).forward is nn.Conv2d.forward and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


class RelayedNorm(RelayedRule):
    """The Norm rule, relayed; through a zennit ``Sum`` in closed form: the input's relevance is its
    summands times R / stab(sum), with the sum taken from the forward pass (no second forward)."""

    needs_output = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = epsilon
        super().__init__(Norm(stabilizer=stabilizer(epsilon)))

    def copy(self):
        return RelayedNorm(self.epsilon)

    def relevance(self, module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, output=None) -> torch.Tensor:
        if isinstance(module, Sum) and output is not None:
            denominator = stabilizer(self.epsilon)(output)
            scaled = torch.div(grad_out, denominator, out=denominator)
            return x * scaled.unsqueeze(module.dim)
        return super().relevance(module, x, grad_out)


@contextmanager
def _parameters_swapped(module: nn.Module, params: dict):
    saved = dict(module._parameters)
    module._parameters.update(params)
    try:
        yield module
    finally:
        module._parameters.update(saved)


class _Relay(torch.autograd.Function):
    """Identity on a layer's output; its backward maps the output's relevance to the input's by the rule
    (None: passed through unchanged)."""

    @staticmethod
    def forward(ctx, x, output, relevance, keep_output=False):
        ctx.relevance, ctx.keep_output = relevance, keep_output
        if relevance is not None:
            ctx.save_for_backward(x, output) if keep_output else ctx.save_for_backward(x)
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.relevance is None:
            return grad_out, None, None, None
        x, *output = ctx.saved_tensors
        return ctx.relevance(x.detach(), grad_out, output[0] if output else None), None, None, None


def stabilizer(epsilon: float):
    """zennit's default stabilizer, x + eps * (sign(x) + (x == 0)), in three passes over x instead of
    five (bit for bit the same values: x + eps where x >= 0, x - eps where x < 0)."""
    def stabilize(x: torch.Tensor) -> torch.Tensor:
        plus = x.new_tensor(epsilon)
        return torch.where(x >= 0, plus, -plus).add_(x)

    return stabilize


def composite(view, epsilon: float, *, relayed: bool = True):
    """The zennit composite for ``view``: ZBox on the first convolution at the Input layer only, with the
    canonizers that ``view.model``'s spec declares.

    ``relayed=False`` gives zennit's own wiring and stabilizers of the same rules (slower; the tests'
    reference)."""
    bounds = view.model.input_bounds() if view.layer == "input" else None
    if relayed:
        pass_rule, norm, zplus, linear = RelayedRule(Pass()), RelayedNorm(1e-6), RelayedZPlus(1e-6), \
            RelayedRule(Epsilon(epsilon=stabilizer(epsilon)))
        first = bounds and RelayedZBox(*bounds, 1e-6)
    else:
        pass_rule, norm, zplus, linear = Pass(), Norm(), ZPlus(), Epsilon(epsilon=epsilon)
        first = bounds and ZBox(*(bound.expand_as(view.inputs) for bound in bounds))
    canonizers = canonizers_for(view.model.spec)
    layer_map = [(Activation, pass_rule), (Sum, norm), (AvgPool, norm), (BatchNorm, pass_rule),
                 (Convolution, zplus), (nn.Linear, linear)]
    if view.layer == "input":
        return SpecialFirstLayerMapComposite(layer_map, [(Convolution, first)], canonizers=canonizers)
    return LayerMapComposite(layer_map, canonizers=canonizers)
