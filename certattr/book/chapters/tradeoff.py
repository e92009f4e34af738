"""The tradeoff chapter (robustness against localization (and faithfulness), from the tables of the chapters before): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...evaluation.findings.families import claims
from ...evaluation.jobs import grid_jobs, grids_for_model, model_list
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
    TAU,
    USER_MODEL,
    WEIGHTS,
    IMAGE_DIR,
)
from .declaration import Chapter, Param, register
from ...course import exercises as course_exercises

__all__ = ["CHAPTER", "plan"]


def plan(b: PlanBuilder):
    """What the trade-off chapter computes when the robustness or localization table is missing: every model's
    photos and grid targets (the grids kept in the plan's extras) at one σ."""
    p = b.p
    names, skip, overrides = models_of(p), p.get("skip") or (), p.get("method_overrides")
    for name in names:
        net = b.model(name)
        images = (b.images_for(net) if p.get("image_dir")
                  else b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images")))
        b.extras.setdefault("images", {}).setdefault(net.name, images)
        b.add(net, photo_jobs_for(net, images), RunSpec(p["methods"], p["layers"], [p["sigma"]], overrides, (), skip))
    qualify = model_list(p["qualify_models"], None) if p.get("qualify_models") else names
    grids = b.extras["grids"] = b.grids(p.get("grid_photos"), p.get("imagenet_dir"), p.get("grid_n_images"),
                                        [b.model(m) for m in qualify], p["n_grids"], p.get("grid_seed", 0),
                                        p["threshold"], p.get("grid_size"))
    grid_overrides = p.get("grid_method_overrides")
    grid_spec = RunSpec(p["methods"], p["layers"], [p["sigma"]],
                        grid_overrides if grid_overrides is not None else overrides, (), skip)
    for name in names:
        net = b.model(name)
        b.add(net, grid_jobs(grids_for_model(grids, net), p.get("cells", "all")), grid_spec)


PARAMETERS = (
    PROFILE,
    MODEL,
    Param("models", None, profiles={"paper": ["resnet18", "wide_resnet50_2", "resnet152", "vgg11", "vit_b_16"]}),
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    *USER_MODEL,
    Param(
        "methods",
        {"input": ["grad", "gb", "ixg", "lrp", "rise", "gradcam"], "final": "all"},
        profiles={"smoke": ["grad", "gradcam"], "paper": "all"},
    ),
    LAYERS,
    Param("sigma", 0.15, note="the radius of the comparison, R: sigma * Phi^-1(tau)"),
    Param("ks", [50, 30, 10], note="robustness and Certified GridPG are averaged over these K"),
    Param("photos", None, profiles={"smoke": ["coffee"]}, heading="robustness: the images of the robustness chapter"),
    IMAGENET_DIR,
    IMAGE_DIR,
    Param("n_images", None, profiles={"paper": 100}),
    Param(
        "qualify_models",
        None,
        profiles={"paper": ["vgg11", "resnet18"]},
        heading="localization: the grids of the localization chapter",
    ),
    Param("grid_photos", None),
    Param("grid_n_images", None, profiles={"paper": 2000}),
    Param("threshold", 0.35, profiles={"paper": 0.99}),
    Param("n_grids", 6, profiles={"smoke": 1, "paper": 500}),
    Param("grid_size", 128, note="with image_dir the cells are the model's input size", profiles={"paper": None}),
    Param("grid_seed", 0),
    Param("cells", "all"),
    N,
    N0,
    TAU,
    ALPHA,
    CORRECTION,
    SEED,
    CHUNK_SIZE,
    METHOD_OVERRIDES,
    Param(
        "grid_method_overrides",
        {
            "intgrad@input": {"steps": 5},
            "rise@input": {"n_masks": 100},
            "occlusion@input": {"window": 43, "stride": 43},
        },
        note="the overrides of the localization chapter's grids (None: method_overrides)",
        profiles={"smoke": None, "paper": None},
    ),
    Param("skip", [], note='"method" or "method@layer": not compared'),
    CACHE_DIR,
    RESULTS_DIR,
)

CHAPTER = register(
    Chapter(
        "tradeoff",
        "Robustness, localization and faithfulness: the trade-off",
        PARAMETERS,
        plan,
        findings=claims("rise_lrp_balance", "rise_best_balance"),
        exercises=tuple(course_exercises.TRADEOFF),
        student_minutes=1,
    )
)
