"""Fixed n against anytime sampling on one image, from one set of cached samples (the "Fewer samples" runs).

:func:`fixed_and_sequential` draws n_max samples once (the engine's cache) and reads them back for every
certificate: the paper's per-K certificates at n in ``ns`` (each K at alpha), the band certificate of the same
samples (all K at alpha together), the per-K certificates at alpha/m (the same joint guarantee by the union
bound), one anytime run to n_max with the default bound whose history gives %certified after every chunk, anytime
runs that stop by the rule ``undecided``, and one anytime run to n_max with each other bound in ``bounds``
(:mod:`certattr.engine.anytime_bounds`). %certified is the share of (K, pixel) pairs certified with either label,
mean over K.
"""
from __future__ import annotations

import contextlib
import tempfile

import numpy as np

from ..engine.certificate import ABSTAIN
from ..engine.config import CertConfig, SamplingConfig
from ..engine.sequential import DEFAULT_BOUND
from ..engine.smoothing import SmoothedAttribution
from ..engine.validation import ANYTIME_BOUNDS, check_bound
from .jobs import Job

__all__ = ["certified_share", "fixed_and_sequential", "samples_to_reach", "stop_from_history"]


def certified_share(labels) -> float:
    """The share of (K, pixel) pairs certified with either label: labels (m, H, W) in {1, 0, ABSTAIN}."""
    return float((np.asarray(labels) != ABSTAIN).mean())


def samples_to_reach(history, target: float, slack: float = 0.01):
    """The first sample count of an anytime run's ``history`` ([samples, certified share, undecided share] per
    chunk) whose certified share is at least target - slack, or None if it never is."""
    return next((int(t) for t, share, _ in history if share >= target - slack), None)


def stop_from_history(history, undecided: float) -> dict:
    """Where the stopping rule ``undecided`` stops an anytime run, read off its history (the first chunk with at
    most that undecided share, else the last): {"undecided", "samples", "certified"}."""
    row = next((r for r in history if r[2] <= undecided), history[-1])
    return {"undecided": float(undecided), "samples": int(row[0]), "certified": float(row[1])}


def fixed_and_sequential(model, method, layer: str, job: Job, sigma: float, sampling: SamplingConfig,
                         cert: CertConfig, *, ns, undecided=(), bounds=ANYTIME_BOUNDS, cache_dir=None) -> dict:
    """The "Fewer samples" comparison on one image (``job``: its tensor (3, H, W), id and target, None for the
    model's top-1), at noise ``sigma``, with ``sampling``'s seed and chunks and n_max = ``sampling.n`` samples
    drawn once, and ``cert``'s K, τ, α and n0 for the fixed-n certificates at each n of ``ns`` (and n_max).

    Returns {"fixed": rows (n, certified, band_certified, per_k_alpha_over_m, band_gain, band_superset),
    "history": the default bound's anytime run's [samples, certified, undecided] per chunk, "stops": rows
    (undecided, samples, certified) of the stopping rule at each ``undecided``, "reach": samples the anytime run
    needs to come within one point of the fixed n_max share (None: not within n_max), "bound": the default bound's
    name, "bounds": {name: {"history", "reach", "anytime_certified", "stops"}} for the default bound and every name
    in ``bounds`` (stops read off the history)}. Every certificate reads the samples from the cache (``cache_dir``
    None: kept in a temporary folder for this call)."""
    n_max = sampling.n
    ns = sorted({int(n) for n in ns} | {n_max})
    bounds = [check_bound(b) for b in dict.fromkeys(bounds) if b != DEFAULT_BOUND]
    with tempfile.TemporaryDirectory() if cache_dir is None else contextlib.nullcontext(cache_dir) as cache:
        def engine(n):
            return SmoothedAttribution(model, method, layer, sigma, sampling.replace(n=n), cert, cache=cache,
                                       progress=False)

        image, image_id = job.tensor, job.image_id
        target = engine(n_max).resolve_target(image, job.target)
        anytime = engine(n_max).certify(image, image_id, target, sequential=True, undecided=0.0)
        fixed = []
        for n in ns:
            per_k = engine(n).certify(image, image_id, target)
            joint = engine(n).certify(image, image_id, target, alpha=cert.alpha / len(per_k.ks))
            fixed.append({"n": n, "certified": certified_share(per_k.labels),
                          "band_certified": certified_share(per_k.band_labels),
                          "per_k_alpha_over_m": certified_share(joint.labels),
                          "band_gain": int(((per_k.band_labels != ABSTAIN) & (joint.labels == ABSTAIN)).sum()),
                          "band_superset": bool(((joint.labels == ABSTAIN) | (per_k.band_labels == joint.labels)).all())})
        stops = []
        for u in undecided:
            stop = engine(n_max).certify(image, image_id, target, sequential=True, undecided=u)
            stops.append({"undecided": float(u), "samples": int(stop.n), "certified": certified_share(stop.labels)})
        others = {name: engine(n_max).certify(image, image_id, target, sequential=True, undecided=0.0,
                                              bound=name).metadata["history"]
                  for name in bounds}  # the other bounds on the same cached samples
    history = anytime.metadata["history"]
    top = fixed[-1]["certified"]
    runs = {DEFAULT_BOUND: history, **others}
    per_bound = {name: {"history": h, "reach": samples_to_reach(h, top), "anytime_certified": float(h[-1][1]),
                        "stops": [stop_from_history(h, u) for u in undecided]} for name, h in runs.items()}
    return {"fixed": fixed, "history": history, "stops": stops, "target": int(target), "n_max": int(n_max),
            "anytime_certified": float(history[-1][1]), "reach": samples_to_reach(history, top),
            "bound": DEFAULT_BOUND, "bounds": per_bound}
