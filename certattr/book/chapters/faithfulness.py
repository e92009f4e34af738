"""The faithfulness chapter (deleting the certified pixels, smallest K first): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...evaluation.findings.families import claims
from ..plans import PlanBuilder, RunSpec, models_of, photo_jobs_for
from .common import (
    ALPHA,
    CACHE_DIR,
    CHUNK_SIZE,
    COMPILATION,
    CORRECTION,
    DEVICE,
    IMAGENET_DIR,
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
    """Every model x image x method x layer at one σ; a user's folder is read at each model's size and channels."""
    p = b.p
    for name in models_of(p):
        net = b.model(name)
        images = (
            b.images_for(net)
            if p.get("image_dir")
            else b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
        )
        b.extras.setdefault("images", {}).setdefault(net.name, images)
        b.add(
            net,
            photo_jobs_for(net, images),
            RunSpec(p["methods"], p["layers"], [p["sigma"]], p.get("method_overrides")),
        )


PARAMETERS = (
    PROFILE,
    MODEL,
    Param(
        "models",
        None,
        note="list of model names (None: [model]); also torchvision:NAME, timm:NAME, file:PATH",
        profiles={"paper": ["resnet18", "vgg11"]},
    ),
    *USER_MODEL,
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    Param("photos", None, profiles={"smoke": ["coffee"]}),
    IMAGENET_DIR,
    IMAGE_DIR,
    Param("n_images", None, profiles={"paper": 100}),
    Param(
        "methods",
        {"input": ["grad", "gb", "ixg", "intgrad", "lrp", "rise", "gradcam"], "final": "all"},
        profiles={"smoke": ["grad", "gradcam"], "paper": "all"},
    ),
    LAYERS,
    SIGMA,
    Param("ks", [10, 30, 50], note="deletion steps, smallest K first"),
    Param("fill", "mean", note='"mean" (0 in the model\'s normalized space), a grey level in [0,1], or 3 floats'),
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
        "faithfulness",
        "Faithfulness: deleting the certified pixels",
        PARAMETERS,
        plan,
        findings=claims(
            "deletion_input_leaders",
            "gradcam_least_faithful_input",
            "final_flip",
            "localization_faithfulness",
            "gradgb_final_faithful_vgg",
        ),
        exercises=tuple(course_exercises.FAITHFULNESS),
        student_minutes=1,
    )
)
