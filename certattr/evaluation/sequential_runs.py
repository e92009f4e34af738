"""Fixed n against anytime sampling on one image, from one set of cached samples (the "Fewer samples" runs).

:func:`fixed_and_sequential` draws n_max samples once (the engine's cache) and reads them back for every
certificate: the paper's per-K certificates at n in ``ns`` (each K at alpha), the band certificate of the same
samples (all K at alpha together), the per-K certificates at alpha/m (the same joint guarantee by the union
bound), one anytime run to n_max whose history gives %certified after every chunk, and anytime runs that stop by
the rule ``undecided``. %certified is the share of (K, pixel) pairs certified with either label, mean over K.
"""
from __future__ import annotations

import contextlib
import tempfile

import numpy as np

from ..engine.certificate import ABSTAIN
from ..engine.smoothing import SmoothedAttribution

__all__ = ["certified_share", "fixed_and_sequential", "samples_to_reach"]


def certified_share(labels) -> float:
    """The share of (K, pixel) pairs certified with either label: labels (m, H, W) in {1, 0, ABSTAIN}."""
    return float((np.asarray(labels) != ABSTAIN).mean())


def samples_to_reach(history, target: float, slack: float = 0.01):
    """The first sample count of an anytime run's ``history`` ([samples, certified share, undecided share] per
    chunk) whose certified share is at least target - slack, or None if it never is."""
    return next((int(t) for t, share, _ in history if share >= target - slack), None)


def fixed_and_sequential(model, method, layer: str, image, image_id: str, target: int | None = None, *,
                         sigma: float, ks, tau: float, alpha: float, n0: int, ns, n_max: int, undecided=(),
                         seed: int = 0, chunk_size: int = 10, cache_dir=None) -> dict:
    """{"fixed": rows (n, certified, band_certified, per_k_alpha_over_m, band_gain), "history": the anytime run's
    [samples, certified, undecided] per chunk, "stops": rows (undecided, samples, certified), "reach": samples the
    anytime run needs to come within one point of the fixed n_max share (None: not within n_max)}. Samples are
    drawn once, n_max of them; every certificate reads them from the cache (``cache_dir`` None: kept in a
    temporary folder for this call)."""
    ns = sorted({int(n) for n in ns} | {int(n_max)})
    with tempfile.TemporaryDirectory() if cache_dir is None else contextlib.nullcontext(cache_dir) as cache:
        def engine(n):
            return SmoothedAttribution(model, method, layer, sigma, n=n, seed=seed, chunk_size=chunk_size,
                                       cache=cache, progress=False, ks=tuple(ks), tau=tau, alpha=alpha, n0=n0)

        target = engine(n_max).resolve_target(image, target)
        anytime = engine(n_max).certify(image, image_id, target, sequential=True, undecided=0.0)
        fixed = []
        for n in ns:
            cert = engine(n).certify(image, image_id, target)
            joint = engine(n).certify(image, image_id, target, alpha=alpha / len(cert.ks))
            fixed.append({"n": n, "certified": certified_share(cert.labels),
                          "band_certified": certified_share(cert.band_labels),
                          "per_k_alpha_over_m": certified_share(joint.labels),
                          "band_gain": int(((cert.band_labels != ABSTAIN) & (joint.labels == ABSTAIN)).sum()),
                          "band_superset": bool(((joint.labels == ABSTAIN) | (cert.band_labels == joint.labels)).all())})
        stops = []
        for u in undecided:
            stop = engine(n_max).certify(image, image_id, target, sequential=True, undecided=u)
            stops.append({"undecided": float(u), "samples": int(stop.n), "certified": certified_share(stop.labels)})
    history = anytime.metadata["history"]
    return {"fixed": fixed, "history": history, "stops": stops, "target": int(target), "n_max": int(n_max),
            "anytime_certified": float(history[-1][1]), "reach": samples_to_reach(history, fixed[-1]["certified"])}

