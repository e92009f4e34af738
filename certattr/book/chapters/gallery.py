"""The gallery chapter (the certified maps of every method on a few photos): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ..plans import PlanBuilder, RunSpec, photo_jobs_for
from .common import (
    ALPHA,
    CACHE_DIR,
    CHUNK_SIZE,
    COMPILATION,
    CORRECTION,
    DEVICE,
    IMAGENET_DIR,
    KS,
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
    IMAGE_DIR,
)
from .declaration import Chapter, Param, register
from ...course import exercises as course_exercises

__all__ = ["CHAPTER", "plan"]


def plan(b: PlanBuilder):
    """The model's photos, every method and layer at one σ."""
    p = b.p
    net = b.model(p["model"])
    if p.get("image_dir"):  # a gallery of the user's classes: the first image of each (or the first n_images)
        own = b.images_for(net)
        images = own if p.get("n_images") else own.one_per_class()
    else:
        images = b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
    b.extras.setdefault("images", {})[net.name] = images
    b.add(net, photo_jobs_for(net, images), RunSpec(p["methods"], p["layers"], [p["sigma"]], p.get("method_overrides")))


PARAMETERS = (
    PROFILE,
    MODEL,
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    *USER_MODEL,
    Param("photos", ["chelsea", "coffee"], profiles={"smoke": ["coffee"], "paper": ["chelsea", "coffee", "camera"]}),
    IMAGENET_DIR,
    IMAGE_DIR,
    Param("n_images", None, note="the first n_images of imagenet_dir or image_dir (None: all of imagenet_dir, the "
          "first image of each class of image_dir, the first two of an unlabelled one)", profiles={"paper": 3}),
    Param("methods", "all", profiles={"smoke": ["grad", "gradcam"]}),
    LAYERS,
    SIGMA,
    KS,
    Param("k_ss", 50),
    N,
    N0,
    TAU,
    ALPHA,
    CORRECTION,
    SEED,
    CHUNK_SIZE,
    METHOD_OVERRIDES,
    CACHE_DIR,
    RESULTS_DIR,
)

CHAPTER = register(
    Chapter(
        "gallery",
        "Gallery: certified attributions of every method",
        PARAMETERS,
        plan,
        findings=(),
        exercises=tuple(course_exercises.GALLERY),
        student_minutes=1,
    )
)
