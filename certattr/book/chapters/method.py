"""The method chapter (one photo, every method, from the raw map to the certified pixels; the anytime certificate): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...evaluation.findings.families import claims
from ...engine.encodings import certificate_encoding
from ...engine.targets import resolve_target
from ...evaluation.jobs import method_for, resolve_methods
from ...models.data import bundled_photo
from ..plans import PlanBuilder, RunSpec, job_for
from .common import (
    ALPHA,
    CACHE_DIR,
    CHUNK_SIZE,
    COMPILATION,
    CORRECTION,
    DEVICE,
    IMAGENET_DIR,
    IMAGE_DIR,
    LAYERS,
    METHOD_OVERRIDES,
    MODEL,
    N,
    N0,
    PRECISION,
    PROFILE,
    RESULTS_DIR,
    SEED,
    SIGMA,
    TAU,
    USER_MODEL,
    WEIGHTS,
)
from .declaration import Chapter, Param, register
from ...course import exercises as course_exercises

__all__ = ["CHAPTER", "plan"]


def plan(b: PlanBuilder):
    """One photo: the focus method's raw maps (shown), every method at both layers, and the "Fewer samples"
    section's entries (fixed n and the anytime runs, one per bundled photo)."""
    p = b.p
    net = b.model(p["model"])
    if p.get("image_dir"):  # the user's image of that id, else the folder's first
        own = b.images_for(net)
        image = next((im for im in own if im.id == p.get("photo")), own[0])
    else:
        image = b.image_set(p["photo"], p.get("imagenet_dir"), 1)[0]
    b.extras["image"] = image
    job = job_for(image.id, image.tensor, resolve_target(net, image.tensor, image.label))
    overrides = p.get("method_overrides") or {}
    # the focus method's maps are shown (engine.sample): raw maps, from which its certificate is derived
    b.add_one(net, method_for(p["focus_method"], p["focus_layer"], overrides), p["focus_layer"], p["sigma"], job,
              reads=[("raw", p["n"])])
    names = resolve_methods(p["methods"])
    b.add(net, [job], RunSpec({layer: names for layer in p["layers"]}, p["layers"], [p["sigma"]], overrides))
    # "Fewer samples": fixed n (each of fewer_ns and fewer_n_max) and the anytime runs (up to fewer_n_max) read
    # one entry per bundled photo (with image_dir: as many of the user's images), at the certificate's encoding
    b.extras["fewer_images"] = []
    if p.get("fewer_photos"):
        fewer = method_for(p["fewer_method"], p["fewer_layer"], overrides)
        spec = certificate_encoding(p["fewer_layer"], p.get("ks") or ()).spec
        ns = sorted({int(v) for v in p.get("fewer_ns") or ()} | {int(p["fewer_n_max"])})
        shots = (b.images_for(net)[:len(p["fewer_photos"])] if p.get("image_dir")
                 else [bundled_photo(photo_id) for photo_id in p["fewer_photos"]])
        b.extras["fewer_images"] = shots
        for shot in shots:
            b.add_one(net, fewer, p["fewer_layer"], p["fewer_sigma"],
                      job_for(shot.id, shot.tensor, resolve_target(net, shot.tensor, shot.label)),
                      reads=[(spec, v) for v in ns])


PARAMETERS = (
    PROFILE,
    MODEL,
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    *USER_MODEL,
    Param(
        "photo",
        "chelsea",
        note="a bundled photo id; with imagenet_dir set, the first image in the paper's order; with image_dir, "
        "the image of that id (else the first)",
        profiles={"smoke": "coffee", "paper": None},
    ),
    IMAGENET_DIR,
    IMAGE_DIR,
    SIGMA,
    Param("ks", [50, 25, 5]),
    N,
    N0,
    TAU,
    ALPHA,
    CORRECTION,
    SEED,
    CHUNK_SIZE,
    Param("methods", "all", profiles={"smoke": ["grad", "ixg", "gradcam"]}),
    LAYERS,
    Param("focus_method", "lrp", profiles={"smoke": "gradcam", "paper": "rise"}),
    Param("focus_layer", "input", profiles={"smoke": "final"}),
    METHOD_OVERRIDES,
    Param(
        "fewer_photos",
        ["chelsea", "coffee"],
        profiles={
            "smoke": ["coffee"],
            "paper": [
                "chelsea",
                "coffee",
                "camera",
                "rocket",
                "astronaut",
                "motorcycle",
                "grace_hopper",
                "china",
                "flower",
            ],
        },
        note="with image_dir: as many of the user's images",
        heading='"Fewer samples": fixed n against anytime sampling (a cheap method, so that the section costs < 2.5 min cold)',
    ),
    Param("fewer_method", "gradcam"),
    Param("fewer_layer", "final"),
    Param("fewer_sigma", 0.25),
    Param("fewer_n_max", 400, profiles={"smoke": 100, "paper": 1000}),
    Param("fewer_ns", [100, 200], profiles={"smoke": [50], "paper": [100, 150, 200]}),
    Param("fewer_undecided", [0.05, 0.1, 0.2]),
    CACHE_DIR,
    RESULTS_DIR,
)

CHAPTER = register(
    Chapter(
        "method",
        "The method on one photo: from an attribution map to certified pixels",
        PARAMETERS,
        plan,
        findings=claims("band_superset", "anytime_reaches_fixed", "anytime_equal_budget"),
        exercises=tuple(course_exercises.METHOD),
        student_minutes=2,
    )
)
