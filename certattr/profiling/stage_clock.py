"""Where one certificate's time goes: the model, and everything certattr adds around it.

    with StageClock(engine.method, device) as clock:     # patches the engine's steps with timers, restores them
        clock.run(engine.certify, image, image_id)        # the wall time outside every stage counts as "other"
    clock.report()                                        # seconds per stage, exclusive (not its children's)

The stages are the functions the engine calls for each chunk, timed where they are looked up (module globals and
class attributes), so the certificate computed under the clock is the one computed without it:

* ``model``: the method's ``attribute`` call (the model passes and the method's own tensor work), minus what is
  timed inside it: ``memo hashing`` (BLAKE2b of the batch for the activation and gradient memos) and
  ``fingerprint`` (the weights' stamp). On a CUDA device the clock synchronizes at the end of ``attribute`` so
  the kernels' time counts here, not in the device-to-host copy that follows;
* ``clean prediction``: the clean image's forward pass that picks the target class (a model pass, once per
  certificate; counted with the model);
* ``cache key``: the entry's identity (SHA-256 of the image, the weights' fingerprint);
* ``noise drawing``: the seeds' hashing (BLAKE2b of (seed, image id, index) + SeedSequence + PCG64, once per
  noisy copy) and NumPy's standard normal draws into the chunk's array (:func:`noise_seconds` times the hashing
  apart; the clock does not, since the rows may be drawn by several threads);
* ``noise scale and add``: sigma * eps and x + sigma * eps on the CPU;
* ``noise wait``: where the engine draws the next chunk's copies during the model's pass (off the CPU, see
  :mod:`certattr.engine.prefetch`), the time the model did not cover: waiting for that draw to finish. The draw
  itself then runs in a background thread; its seconds are reported apart as ``overlapped`` (off the critical
  path, not counted in the share);
* ``host-device copies``: the rest of ``attribute_chunk``: the maps' copy back to the host and their finiteness
  check (the copy to the device happens inside ``attribute`` and is measured apart by :func:`transfer_seconds`);
* ``upsampling``, ``sparsification`` (top-K thresholds by partition, and the flat-map check), ``encoding`` (the
  top-K codes' bit packing, what is left of ``TopKCodes.encode``), ``decoding``, ``cache`` (writing and reading
  chunk files), ``counting`` (``MapCounter.add``), ``testing`` (binomial tests and the certificate);
* ``other``: the certify call's wall time not inside any stage (the loop, the store's bookkeeping).

"Outside the model" is every stage but ``model`` and ``clean prediction``; its share is given over the model's
time (the issue's measure: at most about 10% of the model's time). Stages called from another thread than the
one that entered the clock (the prefetch's) are timed inclusively into ``overlapped``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import torch

from ..engine import certify as certify_module
from ..engine import encodings, noise, prefetch, smoothing
from ..engine.cache import SampleCache
from ..methods import base as methods_base
from ..methods import perturbation
from ..models import registry

#: stages in report order; "model" first, "other" last
STAGES = ("model", "clean prediction", "noise drawing", "noise scale and add", "noise wait", "host-device copies",
          "memo hashing",
          "fingerprint", "cache key", "upsampling", "sparsification", "encoding", "decoding", "cache", "counting", "testing",
          "other")
MODEL_STAGES = ("model", "clean prediction")  #: the model's own passes; every other stage is certattr's


class StageClock:
    """Exclusive seconds per stage while active (a context manager that patches and then restores).

    ``method``: the method object whose ``attribute`` is the model stage (patched on the instance).
    """

    def __init__(self, method, device: torch.device | str = "cpu"):
        self.method = method
        self.cuda = torch.device(device).type == "cuda"
        self.seconds = {stage: 0.0 for stage in STAGES}
        self.calls = {stage: 0 for stage in STAGES}
        self._stack: list[list] = []  # [stage, start, children's seconds]
        self._exit = ExitStack()
        self._thread = threading.get_ident()
        self.overlapped = {stage: 0.0 for stage in STAGES}  #: inclusive seconds of stages run in other threads

    # --- timing ------------------------------------------------------------------------------------------
    def timed(self, stage: str, fn: Callable, sync: bool = False) -> Callable:
        clock = self

        def wrapper(*args, **kwargs):
            if threading.get_ident() != clock._thread:  # the prefetch's thread: beside the critical path
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    clock.overlapped[stage] += time.perf_counter() - start
            clock._stack.append([stage, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                if sync and clock.cuda:
                    torch.cuda.synchronize()
                name, start, children = clock._stack.pop()
                inclusive = time.perf_counter() - start
                clock.seconds[name] += inclusive - children
                clock.calls[name] += 1
                if clock._stack:
                    clock._stack[-1][2] += inclusive
        wrapper.__wrapped__ = fn
        return wrapper

    def _patch(self, owner, name: str, stage: str, sync: bool = False) -> None:
        if name in vars(owner):  # a module's or class's own attribute: put the original back
            self._exit.callback(setattr, owner, name, vars(owner)[name])
        else:  # a bound method of an instance: remove the instance's wrapper again
            self._exit.callback(delattr, owner, name)
        setattr(owner, name, self.timed(stage, getattr(owner, name), sync))

    def __enter__(self) -> StageClock:  # typing.Self is Python 3.11+  # noqa: PYI034
        p = self._patch
        p(self.method, "attribute", "model", sync=True)
        p(noise, "gaussian_noise", "noise drawing")  # not its generators one by one: they may run in threads
        p(smoothing.SmoothedAttribution, "noisy_copies", "noise scale and add")
        p(prefetch.CopyPrefetch, "wait", "noise wait")
        p(smoothing.SmoothedAttribution, "attribute_chunk", "host-device copies")
        for module in (registry, methods_base, perturbation):
            p(module, "tensor_key", "memo hashing")
        p(registry.LoadedModel, "fingerprint", "fingerprint")
        p(smoothing, "resolve_target", "clean prediction", sync=True)
        p(smoothing.SmoothedAttribution, "identity", "cache key")
        for module in (encodings, smoothing):
            p(module, "upsample_maps", "upsampling")
            p(module, "sparsify", "sparsification")
        for module in (encodings, smoothing, certify_module):
            p(module, "flat_maps", "sparsification")
        p(encodings.TopKCodes, "encode", "encoding")
        p(encodings.TopKCodes, "decode", "decoding")
        p(SampleCache, "save_chunk", "cache")
        p(SampleCache, "load_chunk", "cache")
        p(certify_module.MapCounter, "add", "counting")
        p(certify_module.MapCounter, "certificate", "testing")
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()

    def run(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` with its wall time not inside a stage counted as ``other``."""
        start = time.perf_counter()
        result = self.timed("other", fn)(*args, **kwargs)
        self.wall = time.perf_counter() - start
        return result

    # --- the result --------------------------------------------------------------------------------------------
    def report(self) -> dict:
        """{"seconds": per stage, "model_s", "outside_s", "outside_over_model", "wall_s", "overlapped"}; model = the
        stages of :data:`MODEL_STAGES`, outside = all the others (in the thread that entered the clock); overlapped:
        seconds per stage run in the prefetch's thread, during the model's passes."""
        seconds = {k: round(v, 6) for k, v in self.seconds.items()}
        model = self.seconds["model"] + self.seconds["clean prediction"]
        outside = sum(v for k, v in self.seconds.items() if k not in MODEL_STAGES)
        return {"seconds": seconds, "model_s": round(model, 6), "outside_s": round(outside, 6),
                "outside_over_model": round(outside / model, 4) if model > 0 else None,
                "wall_s": round(getattr(self, "wall", model + outside), 6),
                "overlapped": {k: round(v, 6) for k, v in self.overlapped.items() if v > 0}}


def clear_memos(model) -> None:
    """Empty the in-memory memos (Final activations, input gradients, masked logits) so that a timed method pays
    for its own model passes (in a book run the methods at one layer share them)."""
    for name in ("_final_memo", "_gradient_memo"):
        memo = model.__dict__.get(name)
        if memo is not None:
            memo.clear()
    perturbation.MASKED_LOGITS.clear()


def transfer_seconds(batch: torch.Tensor, device, repeats: int = 5) -> float:
    """Best seconds to copy ``batch`` (on the CPU) to ``device`` (0.0 for the CPU itself)."""
    if torch.device(device).type == "cpu":
        return 0.0
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        batch.to(device)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def noise_seconds(shape, count: int, seed: int = 0, image_id: str = "bench") -> dict:
    """Seconds to draw the noise of ``count`` copies of ``shape``: the seed hashing alone (generators built), and the
    whole draw (hashing + drawing) by one thread and by torch's thread count (as the engine draws a chunk)."""
    start = time.perf_counter()
    for i in range(count):
        noise.numpy_generator(seed, image_id, i)
    hashing = time.perf_counter() - start
    threads = torch.get_num_threads()
    whole = {}
    for n_threads in (1, threads):
        torch.set_num_threads(n_threads)
        start = time.perf_counter()
        noise.gaussian_noise(shape, seed, image_id, range(count))
        whole[n_threads] = time.perf_counter() - start
    torch.set_num_threads(threads)
    return {"copies": count, "seed_hashing_s": round(hashing, 6), "one_thread_s": round(whole[1], 6),
            "threads": threads, "hashing_and_drawing_s": round(whole[threads], 6)}
