"""The localization chapter (Certified GridPG on 2x2 grids of the photos): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...evaluation.findings.families import claims
from ...evaluation.jobs import grid_jobs, grids_for_model, model_list
from ..plans import PlanBuilder, RunSpec, models_of
from .common import (
    ALPHA,
    CACHE_DIR,
    CHUNK_SIZE,
    COMPILATION,
    CORRECTION,
    DEVICE,
    LAYERS,
    N,
    N0,
    PRECISION,
    PROFILE,
    RESULTS_DIR,
    SEED,
    TAU,
    USER_MODEL,
    WEIGHTS,
    IMAGE_DIR,
)
from .declaration import Chapter, Param, register
from ...course import exercises as course_exercises

__all__ = ["CHAPTER", "plan"]


def plan(b: PlanBuilder):
    """The grids (built from the images with the qualifying models, kept in the plan's extras for the chapter),
    every target cell of each, every model, method, layer and σ."""
    p = b.p
    names = models_of(p)
    qualify = model_list(p["qualify_models"], None) if p.get("qualify_models") else names
    b.extras["qualify_models"] = [b.model(m) for m in qualify]
    grids = b.extras["grids"] = b.grids(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"),
                                        b.extras["qualify_models"], p["n_grids"], p.get("grid_seed", 0),
                                        p["threshold"], p.get("grid_size"))
    spec = RunSpec(p["methods"], p["layers"], p["sigmas"], p.get("method_overrides"), p.get("first_sigma_only") or (),
                   p.get("skip") or ())
    for name in names:
        net = b.model(name)
        b.add(net, grid_jobs(grids_for_model(grids, net), p.get("cells", "all")), spec)


PARAMETERS = (
    PROFILE,
    Param(
        "model",
        "efficientnet_lite0",
        note="the profile's default model; used when models is None",
        profiles={"paper": "resnet18"},
    ),
    Param(
        "models",
        None,
        note="models evaluated (None: [model])",
        profiles={"paper": ["resnet18", "wide_resnet50_2", "resnet152", "vgg11", "vit_b_16"]},
    ),
    Param(
        "qualify_models",
        None,
        note="models that must all classify a source image confidently (None: models)",
        profiles={"paper": ["vgg11", "resnet18"]},
    ),
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    *USER_MODEL,
    Param("photos", None, note="source images for the grids: bundled photo ids (None: all)"),
    Param("imagenet_dir", None, note="or an ImageNet validation folder with labels.txt"),
    IMAGE_DIR,
    Param("n_images", None, note="how many source images (paper order with imagenet_dir)", profiles={"paper": 2000}),
    Param("threshold", 0.35, note="softmax confidence every qualify model must reach", profiles={"paper": 0.99}),
    Param("n_grids", 6, profiles={"smoke": 1, "paper": 500}),
    Param(
        "grid_size",
        128,
        note="None: cells keep the source size (224 -> 448x448 grids); an int resizes; with image_dir the cells "
        "are the model's input size",
        profiles={"paper": None},
    ),
    Param("grid_seed", 0),
    Param("cells", "all", note='target cells: "all" or a list such as [0]'),
    Param(
        "methods",
        {"input": ["grad", "gb", "ixg", "lrp", "rise", "gradcam"], "final": "all"},
        note='"all", a list, or {layer: list}',
        profiles={"smoke": ["grad", "gradcam"], "paper": "all"},
    ),
    LAYERS,
    Param("sigmas", [0.15, 0.25, 0.33], profiles={"smoke": [0.15]}),
    Param("ks", [50, 30, 20, 10]),
    Param("k_ref", 50, note="the K of the Certified-GridPG-vs-R figure"),
    Param("overlay_ks", [30, 20, 10], note="the K values of the certified grid overlays"),
    Param("overlay_methods", None, note="methods shown on grids (None: up to three of those run)"),
    N,
    N0,
    TAU,
    ALPHA,
    CORRECTION,
    SEED,
    CHUNK_SIZE,
    Param(
        "method_overrides",
        {
            "intgrad@input": {"steps": 5},
            "rise@input": {"n_masks": 100},
            "occlusion@input": {"window": 43, "stride": 43},
        },
        profiles={"smoke": {}, "paper": {}},
    ),
    Param(
        "first_sigma_only",
        [
            "grad@input",
            "gb@input",
            "ixg",
            "lrp",
            "gradcam@input",
            "rise",
            "occlusion",
            "intgrad",
            "gradcampp",
            "ablationcam",
            "cam",
            "layercam",
        ],
        note='"method" or "method@layer": certified at sigmas[0] only',
        profiles={"smoke": [], "paper": []},
    ),
    Param("skip", [], note='"method" or "method@layer": not run at all'),
    CACHE_DIR,
    RESULTS_DIR,
)

CHAPTER = register(
    Chapter(
        "localization",
        "Certified localization: Certified GridPG on 2x2 grids",
        PARAMETERS,
        plan,
        findings=claims("gradgb_final", "input_localization_leaders"),
        exercises=tuple(course_exercises.LOCALIZATION),
        student_minutes=1,
    )
)
