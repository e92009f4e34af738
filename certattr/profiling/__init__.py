"""certattr.profiling: where a certificate's time goes, and the GPU check.

* :mod:`~certattr.profiling.stage_clock`: :class:`StageClock` times each step of the engine around the model
  (seconds per stage of :data:`STAGES`, the model's own in :data:`MODEL_STAGES`) without changing the certificate;
  :func:`clear_memos`, :func:`transfer_seconds` and :func:`noise_seconds` time what it does not;
* :mod:`~certattr.profiling.passes`: the model's passes one map needs (:func:`passes_per_map`, :data:`FORWARD_ONLY`),
  and the model's own passes timed beside a method's (:func:`model_passes`, :func:`paired`);
* the GPU check, ``python -m certattr.profiling.gpu_check OUTDIR [--tiny]`` (``bash benchmarks/gpu_check.sh``
  sets up its environment): :mod:`~certattr.profiling.gpu_check` (the command),
  :mod:`~certattr.profiling.gpu_measurements` (what it measures), :mod:`~certattr.profiling.gpu_run` (its time
  guard and outputs).
"""
from .passes import FORWARD_ONLY, WEIGHTS, model_passes, paired, passes_per_map
from .stage_clock import (
    MODEL_STAGES,
    STAGES,
    StageClock,
    clear_memos,
    noise_seconds,
    transfer_seconds,
)

__all__ = ["FORWARD_ONLY", "MODEL_STAGES", "STAGES", "WEIGHTS", "StageClock", "clear_memos", "model_passes",
           "noise_seconds", "paired", "passes_per_map", "transfer_seconds"]
