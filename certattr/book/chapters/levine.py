"""The levine chapter (Levine et al.'s adversarial training for robust gradient maps, on the bundled digits): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...evaluation.findings.families import claims
from ..plans import PlanBuilder
from .common import (
    ALPHA,
    CACHE_DIR,
    CHUNK_SIZE,
    COMPILATION,
    CORRECTION,
    DEVICE,
    N,
    N0,
    PRECISION,
    PROFILE,
    RESULTS_DIR,
    SEED,
    TAU,
    WEIGHTS,
)
from .declaration import Chapter, Param, register
from ...course import exercises as course_exercises

__all__ = ["CHAPTER", "plan"]


def plan(b: PlanBuilder):
    """Nothing: the levine chapter samples networks it trains itself (their weights are not known before it runs),
    and keeps those samples and its Fig. 1(b) samples in its own folder (``levine_cache_dir``), not in the
    shared sample cache."""


PARAMETERS = (
    PROFILE,
    Param(
        "model",
        "efficientnet_lite0",
        profiles={"paper": "resnet18"},
        heading="the book's model, for Levine's Figure 1(b) on the bundled photos",
    ),
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    Param(
        "lams",
        [0.0, 0.1, 1.0, 10.0],
        note="the penalty weights lambda (0: plain cross-entropy)",
        profiles={"smoke": [0.0, 1.0], "paper": [0.0, 0.01, 0.1, 1.0, 10.0]},
        heading="training (certattr.certificates.robust_training.TrainingSettings)",
    ),
    Param(
        "digit_size",
        16,
        note="load_digits' 8x8 digits upsampled to this size (their MNIST: 28)",
        profiles={"paper": 28},
    ),
    Param("epochs", 10, profiles={"smoke": 1, "paper": 30}),
    Param("batch_size", 64),
    Param("learning_rate", 0.003),
    Param("train_eps", 1.0, note="the training attack's l2 size (over 3 x size^2 values in [0, 1])"),
    Param("train_steps", 2, note="its gradient steps per batch (one random start)", profiles={"paper": 5}),
    Param("activation", "relu", note='"softplus": their MNIST network is itself softplus'),
    Param("twin_beta", 10.0, note="the softplus twin's sharpness"),
    Param("k_frac", 0.1, note="top-k overlap: k is ceil(k_frac * size^2)"),
    Param(
        "attack_eps",
        [0.5, 1.0, 2.0],
        profiles={"smoke": [1.0], "paper": [0.5, 1.0, 2.0, 4.0]},
        heading="their Figure 6: the attack at test time, and the random control of the same norm",
    ),
    Param("attack_steps", 10, profiles={"smoke": 2, "paper": 50}),
    Param("attack_restarts", 1, profiles={"paper": 3}),
    Param("n_attack_digits", 150, profiles={"smoke": 12, "paper": 450}),
    Param("n_example_digits", 4, profiles={"smoke": 2}),
    Param(
        "n_cert_digits",
        10,
        profiles={"smoke": 2, "paper": 100},
        heading="beyond both papers: the certificates of the trained networks (Grad at the Input layer)",
    ),
    Param("digit_sigma", 0.25),
    Param("ks", [50, 30, 10], profiles={"smoke": [50, 10]}),
    N,
    N0,
    TAU,
    ALPHA,
    CORRECTION,
    Param("ss_n", 500, note="Sparsified SmoothGrad's samples per digit", profiles={"smoke": 50, "paper": 8192}),
    Param("ss_tau_frac", 0.1),
    Param("ss_eps", [0.05, 0.1, 0.2], profiles={"smoke": [0.1]}),
    Param("eta", 0.95),
    Param(
        "fig1b_photos",
        ["chelsea", "coffee"],
        profiles={"smoke": ["coffee"], "paper": None},
        heading="Levine's Figure 1(b) on the bundled photos",
    ),
    Param(
        "imagenet_dir", None, note="the paper profile: Figure 1(b) on ImageNet images instead of the bundled photos"
    ),
    Param("fig1b_n_images", None, profiles={"paper": 64}),
    Param(
        "fig1b_resize",
        128,
        note="the photos are resized and center-cropped to this (the book's 256/224: 4x the cost)",
    ),
    Param("fig1b_crop", 112),
    Param("fig1b_sigma", 0.25),
    Param("fig1b_n", 400, profiles={"smoke": 20, "paper": 8192}),
    Param("fig1b_k_frac", 0.1),
    Param("fig1b_eps", [0.005, 0.01, 0.02, 0.04], profiles={"smoke": [0.01]}),
    SEED,
    CHUNK_SIZE,
    Param(
        "method_overrides",
        {
            "intgrad@input": {"steps": 5},
            "rise@input": {"n_masks": 100},
            "occlusion@input": {"window": 75, "stride": 75},
        },
        note="the profiles' common setting; no method here has hyperparameters to reduce",
        profiles={"smoke": {}, "paper": {}},
    ),
    Param("digit_chunk_size", 50),
    CACHE_DIR,
    Param("levine_cache_dir", None, note='weights and this chapter\'s samples (None: "levine" next to cache_dir)'),
    RESULTS_DIR,
)

CHAPTER = register(
    Chapter(
        "levine",
        "Adversarial training for robust saliency (Levine et al.'s second defense)",
        PARAMETERS,
        plan,
        findings=claims("levine_robustness_rises", "levine_accuracy_drops_little", "levine_sparsified_vs_scaled"),
        exercises=tuple(course_exercises.LEVINE),
        student_minutes=2,
    )
)
