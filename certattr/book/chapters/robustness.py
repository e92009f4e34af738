"""The robustness chapter (%certified against the radius and against K, on every model and photo): its parameters under each profile, the sampling plan its notebook
and a sweep both run, the claims it checks and its exercises."""

from __future__ import annotations

from ...evaluation.findings.families import claims
from ...evaluation.jobs import model_scope_of
from ..plans import PlanBuilder, RunSpec, models_of, photo_jobs_for
from .common import (
    ALPHA,
    CACHE_DIR,
    CHUNK_SIZE,
    COMPILATION,
    CORRECTION,
    DEVICE,
    KS,
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
    """Every model's images (each at its own input size, narrowed to its ``model_scope``) with its methods at the
    first σ, and the trend images at the other σ without the ``first_sigma_only`` methods."""
    p = b.p
    trend_photos = p.get("trend_photos")
    if p.get("image_dir"):  # the user's images: every one at every sigma
        trend_ids = set()
    elif trend_photos and not p.get("imagenet_dir"):
        trend_ids = set(trend_photos)
    else:
        trend_ids = {im.id for im in b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))}
    sigmas, skip = list(p["sigmas"]), list(p.get("skip") or [])
    for name in models_of(p):
        net = b.model(name)
        scope = model_scope_of(p.get("model_scope"), name)
        # every model reads the images at its own input size (a user's folder also at its channels), narrowed to
        # its scope's photos
        own = b.images_for(net, p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
        own = [im for im in own if not scope.get("photos") or im.id in set(scope["photos"])]
        methods = scope.get("methods", p["methods"])
        b.add(
            net,
            photo_jobs_for(net, own),
            RunSpec(methods, p["layers"], sigmas[:1], p.get("method_overrides"), (), skip),
        )
        if len(sigmas) > 1:
            trend = own if p.get("image_dir") else [im for im in own if im.id in trend_ids]
            b.add(
                net,
                photo_jobs_for(net, trend),
                RunSpec(
                    methods,
                    p["layers"],
                    sigmas[1:],
                    p.get("method_overrides"),
                    (),
                    skip + list(p.get("first_sigma_only") or []),
                ),
            )


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
        ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        note="list of model names (None: [model]); also torchvision:NAME, timm:NAME, file:PATH",
        profiles={"smoke": None, "paper": ["resnet18", "wide_resnet50_2", "resnet152", "vgg11", "vit_b_16"]},
    ),
    Param(
        "model_scope",
        {  # the claims "on every model" need at least 8 images per model for an interval: every photo, with
            # the cheap Input-layer methods (Grad and IxG share one gradient) and every Final-layer method
            "efficientnet_lite1": {"methods": {"input": ["grad", "ixg"], "final": "all"}},
            "efficientnet_lite2": {"methods": {"input": ["grad", "ixg"], "final": "all"}},
        },
        note='{model: {"photos": [...], "methods": {...}}}: a narrower run for some models',
        profiles={"smoke": {}, "paper": {}},
    ),
    *USER_MODEL,
    IMAGE_DIR,
    WEIGHTS,
    DEVICE,
    PRECISION,
    COMPILATION,
    Param(
        "photos",
        None,
        note="bundled photo ids (None: all of them); ignored when imagenet_dir is set",
        profiles={"smoke": ["coffee"]},
    ),
    Param("imagenet_dir", None, note="an ImageNet validation folder with labels.txt (the paper profile)"),
    Param(
        "n_images", None, note="the first n_images (of the paper's order with imagenet_dir)", profiles={"paper": 100}
    ),
    Param(
        "methods",
        {"input": ["grad", "gb", "ixg", "intgrad", "lrp", "rise", "gradcam"], "final": "all"},
        note='"all", a list, or {layer: list}',
        profiles={"smoke": ["grad", "gradcam"], "paper": "all"},
    ),
    LAYERS,
    Param(
        "sigmas",
        [0.15, 0.25, 0.33],
        note="radii R, sigma * Phi^-1(tau): 0.10, 0.17, 0.22 at tau 0.75",
        profiles={"smoke": [0.15, 0.33]},
    ),
    Param("trend_photos", None, note="photos certified at the sigmas after the first (None: all the images)"),
    KS,
    Param("k_ref", 50, note="the K of the %certified-vs-R figure"),
    Param(
        "taus",
        [0.75, 0.9],
        note="further tau values certified from the same samples at sigmas[0]",
        profiles={"paper": []},
    ),
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
            "occlusion@input": {"window": 75, "stride": 75},
        },
        note='{"rise@input": {"n_masks": 50}, ...}',
        profiles={"smoke": {}, "paper": {}},
    ),
    Param(
        "first_sigma_only",
        [
            "gradcam@input",
            "rise@input",
            "intgrad",
            "gradcampp",
            "ablationcam",
            "cam",
            "gb@input",
            "lrp",
            "ixg@final",
            "occlusion@final",
            "layercam@final",
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
        "robustness",
        "Certified robustness: %certified against the radius and against K",
        PARAMETERS,
        plan,
        findings=claims(
            "sigma_trend",
            "tau_trend",
            "r_trend_every_model",
            "k_trend_every_model",
            "gradient_input",
            "input_robust_leaders",
            "input_small_k_balance",
            "small_k_detail",
        ),
        exercises=tuple(course_exercises.ROBUSTNESS),
        student_minutes=1,
    )
)
