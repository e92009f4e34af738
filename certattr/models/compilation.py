"""Compiled forward-only passes (``torch.compile``) where they repay their compile time, eager otherwise.

RISE and Occlusion run the model thousands of times per image without gradients (the masked passes of
:func:`certattr.methods.perturbation.masked_forwards`); compiling that pass once makes each later batch cheaper
(2-core CPU, batch 8, 224x224, over the folded channels-last eager path: EfficientNet-Lite0 about 1.15x,
ResNet-18 about 1.03x, see :data:`ESTIMATES`) but costs tens of seconds first. Passes with a gradient are never compiled (on
the CPU compiled forward+gradient ran at 0.79x of eager).

**The policy** (``load_model(..., compilation=)``, :meth:`LoadedModel.set_compilation`, ``--compilation``):

* ``"off"``: always eager.
* ``"on"``: every masked-pass call of RISE and Occlusion runs compiled (for tests and benchmarks, or a model
  known to gain).
* ``"auto"`` (the default of :func:`certattr.models.registry.load_model`): a call compiles when its own work
  repays the compile time, i.e. when ``images * t_eager * (1 - 1 / speedup) > compile_seconds``, with
  ``images`` the images that call passes through the model (masks x rows) and the three estimates measured
  for the architecture, layer, device type and precision (:data:`ESTIMATES`); an architecture without an
  estimate runs eager. Only the call's own work counts, not what earlier calls did or later ones will do, so
  the decision, hence the maps, depends only on the call's settings (conservative: the compile time is paid
  once per process and shape, then reused). An estimated speed-up under :data:`MIN_SPEEDUP` never compiles.

**Why measured estimates and not rates timed during the run.** A chunk's maps must depend only on its sample
indices and the settings (certificates are bit for bit the same whatever the order, interruption and
resumption, see :class:`certattr.engine.smoothing.SmoothedAttribution`). Compiled logits differ from eager ones
at float rounding; a decision taken from the machine's momentary speed would make a resumed run mix samples of
both kinds under one cache key. So the rates are measured by the benchmark, stored here, and the decision is a
function of the settings alone. The policy (and for ``"auto"`` a hash of :data:`ESTIMATES`) is part of the
model's fingerprint, hence of every sample-cache key; ``"off"`` leaves the keys as they were.

**Shapes.** Graphs are compiled for static shapes and every pass of a call is padded with zero rows to the
call's full pass (``masks per pass x rows per pass`` images), so a call's last, smaller pass (the last chunk of
masks or windows, Occlusion's unmasked pass) reuses its graph instead of compiling another; rows do not interact
in eval mode, so the padding changes nothing but time (at most one pass per call). A run's last chunk of noisy
copies can have a smaller full pass and then compiles once more. Dynamic shapes (one graph for every batch size)
were measured and rejected: on the 2-core machine EfficientNet-Lite0's dynamic-shape compile had not finished
after 25 minutes (symbolic index simplification), against 44 s for a static one (cold cache).

**Failure.** Where compilation is unavailable (torch without ``torch.compile``, no C++ compiler for the CPU
backend), :func:`resolve_policy` turns the policy off when the model is loaded (one warning for ``"on"``).
A compilation that fails later (an unsupported operation) warns once and the model runs eager from then on;
that is never an error.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable

import torch

from ..engine.validation import check_choice

__all__ = ["POLICIES", "CompileEstimate", "ESTIMATES", "estimate_for", "has_estimate", "should_compile",
           "compiler_unavailable", "resolve_policy", "policy_key", "forward_runner", "compiled_state", "forget"]

POLICIES = ("off", "auto", "on")


@dataclass(frozen=True)
class CompileEstimate:
    """What compiling one model's forward-only pass costs and gains, for one layer, device type and precision.

    ``eager_seconds_per_image``: eager seconds per image at the pass batch; ``speedup``: eager time over
    compiled time per batch (> 1 where compiling gains); ``compile_seconds``: the first compiled call's extra
    time (tracing, code generation, C++ compilation)."""

    eager_seconds_per_image: float
    speedup: float
    compile_seconds: float

    def saving(self, images: int) -> float:
        """Seconds saved on ``images`` images by running compiled, before the compile time."""
        return images * self.eager_seconds_per_image * (1.0 - 1.0 / self.speedup)

    def break_even_images(self) -> float:
        """Images after which the compile time is repaid (inf where compiling does not gain)."""
        gain = self.eager_seconds_per_image * (1.0 - 1.0 / self.speedup)
        return self.compile_seconds / gain if gain > 0 else float("inf")


#: Below this speed-up "auto" never compiles: on the shared 2-core machine a measured ratio moves by about +-0.1
#: between runs, so a smaller gain is not a measured one.
MIN_SPEEDUP = 1.1

#: Measured by ``benchmarks/bench_compile.py`` (BatchNorm folded, channels_last, fp32, 8 rows per call, pass batch 8,
#: 224x224, 2 CPU threads, torch 2.14, load average 4-8 on 2 cores; results/compile.json cold inductor cache,
#: results/compile_warm_cache.json warm): (model name, layer, device type, precision) -> estimate. The speed-up is
#: the mean of RISE and Occlusion over both runs (Lite0 1.11, 0.97, 1.32, 1.21; ResNet-18 1.06, 0.98, 0.98, 1.08),
#: over the fast eager path, not over the NCHW network as built (the issue's 2.56x for Lite0 was mostly what
#: channels_last and folding already give); the compile time is the cold one. Eager rate and compile time were
#: measured under the same load: the break-even, their ratio, is what decides. Only the Input layer: at the Final
#: layer these models' GAP->linear head is computed in closed form, without model passes.
ESTIMATES: dict[tuple[str, str, str, str], CompileEstimate] = {
    ("efficientnet_lite0", "input", "cpu", "fp32"): CompileEstimate(0.118, 1.15, 44.0),
    ("resnet18", "input", "cpu", "fp32"): CompileEstimate(0.109, 1.03, 13.5),  # below MIN_SPEEDUP: eager
}


def estimate_for(model, layer: str) -> CompileEstimate | None:
    """The estimate for a loaded model at ``layer`` on its device and precision; None for an architecture not
    measured (a wrapped model, whose ``spec.identity`` is set, is never taken for the preset of the same name)."""
    spec = getattr(model, "spec", None)
    if spec is None or getattr(spec, "identity", ""):
        return None
    execution = getattr(model, "execution", None)
    precision = getattr(execution, "precision", "fp32")
    return ESTIMATES.get((spec.name, layer, torch.device(model.device).type, precision))


def should_compile(policy: str, estimate: CompileEstimate | None, images: int) -> bool:
    """Does a forward-only call passing ``images`` images through the model run compiled under ``policy``?
    ``"auto"``: only where an estimate says its saving exceeds the compile time (see the module's docstring)."""
    if policy == "on":
        return True
    if policy == "off" or estimate is None or estimate.speedup < MIN_SPEEDUP:
        return False
    return estimate.saving(images) > estimate.compile_seconds


def compiler_unavailable(device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here (one line), or None where it can be tried."""
    if not hasattr(torch, "compile"):
        return f"this torch ({torch.__version__}) has no torch.compile"
    if torch.device(device).type == "cpu":
        compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "no C++ compiler (g++, c++ or clang++, or $CXX) for the CPU backend"
    return None


def has_estimate(spec, device) -> bool:
    """Is there an estimate for the architecture of ``spec`` on ``device``'s type (any layer or precision) in
    which compiling gains (speed-up at least :data:`MIN_SPEEDUP`)?"""
    if spec is None or getattr(spec, "identity", ""):
        return False
    device_type = torch.device(device).type
    return any(name == spec.name and kind == device_type and estimate.speedup >= MIN_SPEEDUP
               for (name, _, kind, _), estimate in ESTIMATES.items())


def resolve_policy(policy: str, device, spec=None) -> str:
    """``policy`` as it will run on ``device``: "off" where compilation is unavailable (a warning for "on"), and
    "auto" is "off" for an architecture without an estimate that gains on this device type (given ``spec``, a
    :class:`ModelSpec`): it would never compile, and its cache keys stay those of "off"."""
    check_choice("compilation", policy, POLICIES)
    if policy == "auto" and not has_estimate(spec, device):
        return "off"
    if policy != "off":
        why = compiler_unavailable(device)
        if why is not None:
            if policy == "on":
                warnings.warn(f"compilation='on' is not available ({why}): the model runs eager", RuntimeWarning,
                              stacklevel=3)
            return "off"
    return policy


def policy_key(policy: str) -> str:
    """What the policy adds to the model's fingerprint: nothing for "off"; for "auto" also a hash of
    :data:`ESTIMATES` (re-measured estimates may change the decisions, hence the samples)."""
    if policy == "off":
        return ""
    if policy == "auto":
        digest = hashlib.sha256(repr(sorted(ESTIMATES.items())).encode()).hexdigest()[:8]
        return f"compilation=auto@{digest}"
    return f"compilation={policy}"


# --- the compiled callables ----------------------------------------------------------------------------------
def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor`` with zero rows appended up to ``rows`` rows, in its own memory layout."""
    missing = rows - tensor.shape[0]
    if missing <= 0:
        return tensor
    padded = torch.cat([tensor, tensor.new_zeros((missing, *tensor.shape[1:]))])
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) \
            and not tensor.is_contiguous():
        padded = padded.contiguous(memory_format=torch.channels_last)
    return padded


def _as_traced(tensor: torch.Tensor) -> torch.Tensor:
    """Under inference mode, an inference tensor (a copy of a tensor made outside it): a graph traced on one kind
    does not serve the other (dynamo guards on the dispatch keys), so Occlusion's unmasked pass on the layer's
    tensor would otherwise recompile the graph its masked passes use."""
    if torch.is_inference_mode_enabled() and not tensor.is_inference():
        return tensor.clone()
    return tensor


#: model -> {layer: its compiled module, "failed": True once a compilation failed}. Outside the model, so that a
#: model is copied and pickled (Dask workers) without its compiled code; an entry goes with its model.
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_state(model) -> dict:
    """The compiled modules of ``model`` made so far, by layer ("failed": True once a compilation failed)."""
    return _COMPILED.setdefault(model, {})


def forget(model) -> None:
    """Drop ``model``'s compiled modules (its policy or precision changed)."""
    _COMPILED.pop(model, None)


def _compiled_module(model, view) -> Callable | None:
    """The compiled module behind ``view`` (the whole network at the Input layer, the head at the Final layer),
    made once per model and layer; None once a compilation of this model has failed."""
    state = compiled_state(model)
    if state.get("failed"):
        return None
    if view.layer not in state:
        module = model.net if view.layer == "input" else view.module
        state[view.layer] = torch.compile(module, dynamic=False)
    return state[view.layer]


def _fail(model, err: Exception) -> None:
    compiled_state(model)["failed"] = True
    reason = (str(err).strip().splitlines() or [""])[0][:200]
    warnings.warn(f"torch.compile failed for model {getattr(model, 'name', '?')!r} ({type(err).__name__}: {reason}); "
                  f"it runs eager from now on", RuntimeWarning, stacklevel=4)


def forward_runner(view, images: int, pass_images: int) -> Callable[..., torch.Tensor]:
    """The function ``(inputs, *context) -> logits`` a forward-only call of ``images`` images in passes of at
    most ``pass_images`` rows uses: ``view.forward`` itself (eager), or the compiled module with every pass padded
    to ``pass_images`` rows (one graph per run), as the model's policy decides (:func:`should_compile`)."""
    model = getattr(view, "model", None)
    execution = getattr(model, "execution", None)
    policy = getattr(execution, "compilation", "off")
    if not should_compile(policy, estimate_for(model, view.layer) if policy == "auto" else None, images):
        return view.forward
    if compiled_state(model).get("failed"):
        return view.forward

    def run(inputs: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        context = context if context else view.context
        parts = []
        for start in range(0, inputs.shape[0], pass_images):
            piece, piece_context = inputs[start:start + pass_images], [c[start:start + pass_images] for c in context]
            try:
                compiled = _compiled_module(model, view)
                if compiled is not None:
                    padded = [_as_traced(_pad_rows(t, pass_images)) for t in (piece, *piece_context)]
                    parts.append(compiled(*padded)[:piece.shape[0]])
                    continue
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
                _fail(model, err)
            parts.append(view.forward(piece, *piece_context))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    return run
