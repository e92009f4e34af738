"""The parameters most chapters share, with their value under each profile (the cpu value is the parameters
cell's default)."""

from __future__ import annotations

from .declaration import Param

__all__ = [
    "ALPHA",
    "CACHE_DIR",
    "CHUNK_SIZE",
    "COMPILATION",
    "CORRECTION",
    "DEVICE",
    "IMAGENET_DIR",
    "IMAGE_DIR",
    "USER_MODEL",
    "KS",
    "LAYERS",
    "METHOD_OVERRIDES",
    "MODEL",
    "N",
    "N0",
    "PRECISION",
    "PROFILE",
    "RESULTS_DIR",
    "SEED",
    "SIGMA",
    "TAU",
    "WEIGHTS",
]

ALPHA = Param("alpha", 0.001)
CACHE_DIR = Param("cache_dir", "../../.cache/samples")
CHUNK_SIZE = Param("chunk_size", 10, profiles={"paper": 50})
COMPILATION = Param(
    "compilation",
    "auto",
    note="torch.compile of RISE's and Occlusion's forward passes: auto (where it repays its compile time), off, on",
)
CORRECTION = Param("correction", "bonferroni")
DEVICE = Param("device", "cpu", profiles={"paper": "cuda"})
IMAGENET_DIR = Param("imagenet_dir", None)
IMAGE_DIR = Param(
    "image_dir",
    None,
    note="your own images (overrides photos and imagenet_dir): a folder with one subfolder per class, a CSV of "
    "(file, label), or a folder or glob of unlabelled images",
)
#: how a user's model (torchvision:NAME, timm:NAME, file:PATH, a .pt2 program) is read (certattr.book.plans.SOURCE_PARAMETERS)
USER_MODEL = (
    Param("final_layer", None, note="a torchvision:/timm:/file model's Final layer (module path; None: guessed)"),
    Param("mean", None, note="a file model's normalization, one value per channel"),
    Param("std", None),
    Param("input_size", None, note="a file model's square input side"),
    Param("trust_pickle", False, note="allow a pickled whole module (it runs code named in the file)"),
    Param("classes", None, note="a torchvision:/timm:/file model's class names: a list, or a file with one per line"),
)
KS = Param("ks", [50, 30, 10])
LAYERS = Param("layers", ["input", "final"], profiles={"smoke": ["final"]})
METHOD_OVERRIDES = Param(
    "method_overrides",
    {"intgrad@input": {"steps": 5}, "rise@input": {"n_masks": 100}, "occlusion@input": {"window": 75, "stride": 75}},
    profiles={"smoke": {}, "paper": {}},
)
MODEL = Param("model", "efficientnet_lite0", profiles={"paper": "resnet18"})
N = Param("n", 100)
N0 = Param("n0", 10)
PRECISION = Param(
    "precision", "fp32", note="of the model passes: fp32, bf16 (CPU, CUDA) or fp16 (CUDA); part of every cache key"
)
PROFILE = Param("profile", "cpu", profiles={"smoke": "smoke", "paper": "paper"})
RESULTS_DIR = Param("results_dir", "results")
SEED = Param("seed", 0)
SIGMA = Param("sigma", 0.15)
TAU = Param("tau", 0.75)
WEIGHTS = Param("weights", "pretrained")
