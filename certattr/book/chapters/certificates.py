"""The certificates chapter (the paper's certificate beside Sparsified SmoothGrad's and the cosine bound, and attacks on them): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...certificates.attack import select_seed
from ...engine.encodings import BoundedSum, TopKSet, certificate_encoding
from ...engine.targets import resolve_target
from ..plans import PlanBuilder, job_for
from .common import (
    CACHE_DIR,
    CHUNK_SIZE,
    COMPILATION,
    CORRECTION,
    DEVICE,
    IMAGENET_DIR,
    MODEL,
    N,
    N0,
    PRECISION,
    PROFILE,
    RESULTS_DIR,
    SEED,
    SIGMA,
    TAU,
    WEIGHTS,
)
from .declaration import Chapter, Param, register
from ...course import exercises as course_exercises

__all__ = ["CHAPTER", "plan"]


def plan(b: PlanBuilder):
    """One photo: the certificate's samples (which Sparsified SmoothGrad reads too), the certified-pixel attack's
    fresh ranking samples and the cosine certificate's uniform samples in the l2 ball."""
    import math

    p = b.p
    net = b.model(p["model"])
    image = b.image_set(p["photo"], p.get("imagenet_dir"), 1)[0]
    target = 0 if image.id.startswith("placeholder-") else resolve_target(net, image.tensor, None)  # the top-1
    job = job_for(image.id, image.tensor, target)
    # the certificate (n samples, its top-K codes) and Sparsified SmoothGrad (each of topk_ns, its top-k sets)
    # read the same entry
    cert_spec = certificate_encoding(p["layer"], p["ks"]).spec
    reads = [(cert_spec, int(p["n"]))] + [(TopKSet(p["topk_frac"]).spec, int(m)) for m in p.get("topk_ns", [])]
    b.add_one(net, p["method"], p["layer"], p["sigma"], job, reads=reads)
    select_n = int(p["pixel_attack_select_n"])
    if select_n > 0:  # the certified-pixel attack ranks its targets on fresh samples at the largest K
        b.add_one(net, p["method"], p["layer"], p["sigma"], job, seed=select_seed(p["seed"]),
                  reads=[(certificate_encoding(p["layer"], [max(p["ks"])]).spec, select_n)])
    # the cosine certificate: uniform noise in the l2 ball, the chunks' sums of the maps bounded by M
    d_input = int(image.tensor.numel())
    r = float(p["cos_r"]) if p.get("cos_r") is not None else float(p["sigma"]) * math.sqrt(d_input + 2)
    b.add_one(net, p["method"], p["layer"], r, job, noise="uniform-ball",
              reads=[(BoundedSum(p.get("cos_M", 1.0), "normalize").spec, int(p["cos_N"]))])


PARAMETERS = (
    PROFILE,
    MODEL,
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    Param(
        "photo",
        "coffee",
        note="a bundled photo id; with imagenet_dir set, the first image in the paper's order",
        profiles={"paper": None},
    ),
    IMAGENET_DIR,
    Param("method", "ixg", note="one attribution map for all three certificates (the attacks need grad or ixg)"),
    Param("layer", "final"),
    SIGMA,
    Param("ks", [50, 25, 5]),
    N,
    N0,
    TAU,
    Param("alpha", 0.001, note="failure probability of every certificate here (top-k: eta is 1 - alpha)"),
    CORRECTION,
    SEED,
    CHUNK_SIZE,
    Param("topk_frac", 0.25, note="Sparsified SmoothGrad keeps the top 25% of the layer map (k elements)"),
    Param("topk_gamma", 0.05, note="relaxed variant (attack surrogate): the top 5% are clipped to 1"),
    Param(
        "topk_ns",
        [50, 100, 200],
        note="sample counts of Sparsified SmoothGrad (smaller ones are prefixes of the largest)",
        profiles={"smoke": [50, 100], "paper": [100, 1000, 8192]},
    ),
    Param("cos_T", 0.9, note="cosine threshold T"),
    Param("cos_N", 64, note="uniform samples of the cosine certificate", profiles={"smoke": 16, "paper": 8192}),
    Param("cos_r", None, note="ball radius; None: sigma * sqrt(d + 2), the same per-coordinate spread as sigma"),
    Param("cos_M", 1.0, note="the bound M on ||g||: every map is normalised to norm M"),
    Param(
        "attack_eps",
        [1, 10],
        note="attack sizes, in multiples of our radius R",
        profiles={"smoke": [1], "paper": [1, 2, 5, 10]},
    ),
    Param(
        "attack_n",
        100,
        note="not used since the certified-pixel attack reuses the certificate above (n)",
        profiles={"smoke": 80},
    ),
    Param(
        "attack_steps",
        4,
        note="steps of the attack on Sparsified SmoothGrad (top-k overlap)",
        profiles={"smoke": 1, "paper": 20},
    ),
    Param("attack_restarts", 1, note="random restarts of every attack", profiles={"paper": 2}),
    Param(
        "attack_n_attack",
        2,
        note="noisy copies per step of the attack on Sparsified SmoothGrad",
        profiles={"paper": 8},
    ),
    Param(
        "pixel_attack_eps",
        [0, 0.5, 1, 2, 5, 10, 30],
        note="certified-pixel attack sizes in multiples of R",
        profiles={"smoke": [0, 1, 10], "paper": [0, 0.5, 1, 2, 5, 10, 30, 100]},
    ),
    Param(
        "pixel_attack_targets", 32, note="pixels per target group (certified nearest the boundary, and uncertified)"
    ),
    Param("pixel_attack_steps", 10, note="steps of the certified-pixel attack", profiles={"smoke": 2, "paper": 40}),
    Param("pixel_attack_n_attack", 2, note="fresh noisy copies per step", profiles={"smoke": 2, "paper": 8}),
    Param(
        "pixel_attack_eval_n",
        200,
        note="fresh samples that estimate the smoothed labels at x + delta",
        profiles={"smoke": 40, "paper": 1000},
    ),
    Param(
        "pixel_attack_select_n",
        100,
        note="fresh samples that only rank the certified targets",
        profiles={"smoke": 20, "paper": 500},
    ),
    Param(
        "topk_attack_steps",
        6,
        note="steps of the attack on the raw (unsmoothed) map",
        profiles={"smoke": 1, "paper": 20},
    ),
    Param(
        "topk_attack_n_eval",
        20,
        note="samples of the smoothed map evaluated at x and x + delta",
        profiles={"smoke": 10, "paper": 64},
    ),
    Param(
        "method_overrides",
        {
            "intgrad@input": {"steps": 5},
            "rise@input": {"n_masks": 100},
            "occlusion@input": {"window": 75, "stride": 75},
        },
        note="not used here: grad and ixg have no hyperparameters",
        profiles={"smoke": {}, "paper": {}},
    ),
    CACHE_DIR,
    RESULTS_DIR,
)

CHAPTER = register(
    Chapter(
        "certificates",
        "Three certificates for one attribution map",
        PARAMETERS,
        plan,
        findings=(),
        exercises=tuple(course_exercises.CERTIFICATES),
        student_minutes=15,
    )
)
