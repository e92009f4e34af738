"""The vit chapter (ViT-B/16: its tokens as a 14x14 map): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...evaluation.findings.families import claims
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
    N,
    N0,
    PRECISION,
    PROFILE,
    RESULTS_DIR,
    SEED,
    SIGMA,
    TAU,
)
from .declaration import Chapter, Param, register
from ...course import exercises as course_exercises

__all__ = ["CHAPTER", "plan"]


def plan(b: PlanBuilder):
    """ViT-B/16 (a random one with its all-zero head redrawn) on its photos at one σ."""
    p = b.p
    net = b.model(p["model"], seed=int(p["seed"]), redraw=True)
    images = b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
    b.add(net, photo_jobs_for(net, images), RunSpec(p["methods"], p["layers"], [p["sigma"]], p.get("method_overrides")))


PARAMETERS = (
    PROFILE,
    Param("model", "vit_b_16"),
    Param(
        "weights",
        "random",
        note='no offline ViT weights: "random" on the CPU profiles, "pretrained" on the paper\'s',
        profiles={"paper": "pretrained"},
    ),
    DEVICE,
    PRECISION,
    COMPILATION,
    Param("photos", ["coffee"]),
    IMAGENET_DIR,
    Param("n_images", 1, profiles={"paper": 3}),
    Param("methods", ["gradcam", "rise"], profiles={"smoke": ["gradcam"], "paper": "all"}),
    Param("layers", ["final"], profiles={"paper": ["input", "final"]}),
    SIGMA,
    KS,
    Param("k_ss", 50, note="the K of the SS (mean sparsified) column"),
    N,
    N0,
    TAU,
    ALPHA,
    CORRECTION,
    SEED,
    CHUNK_SIZE,
    Param("method_overrides", {"rise@final": {"n_masks": 20}}, profiles={"smoke": {}, "paper": {}}),
    CACHE_DIR,
    RESULTS_DIR,
)

CHAPTER = register(
    Chapter(
        "vit",
        "Vision Transformers: from tokens to a 14x14 map",
        PARAMETERS,
        plan,
        findings=claims("vit_gradient_weak", "vit_rise_robust", "vit_activation_weak_final"),
        exercises=tuple(course_exercises.VIT),
        student_minutes=4,
    )
)
