"""A second domain: the robustness, localization, faithfulness and trade-off chapters on handwritten digits.

The paper's claims are about ImageNet models; with the 9 bundled photos most of its rankings cannot be decided
offline. Here the same notebooks, plans and claims run on scikit-learn's bundled digits (1,797 handwritten digits,
8x8, upsampled to 32x32) and a small CNN trained here (:mod:`certattr.models.digits`), read the way a researcher's
own data is read: the test digits are written as a labelled folder and given to the chapters as ``image_dir``.
Every claim gets a verdict on each domain, side by side in the findings table. The digits are a second domain,
not the paper's setting, and the pages say so.
"""

from __future__ import annotations

from pathlib import Path

from ...models.digits import DigitsTraining, trained_digits_cnn, write_digits_folder
from .declaration import Domain, get, register, register_domain

__all__ = ["DIGITS", "DIGIT_COUNTS", "CHAPTERS"]

#: how many test digits each profile's chapters read (the first of the held-out split, in the data set's order)
DIGIT_COUNTS = {"smoke": 12, "cpu": 200, "paper": 539}


def _prepare(root: Path, profile: str) -> dict:
    """Write the profile's test digits as a labelled folder under ``<root>/.cache/digits`` (once)."""
    count = DIGIT_COUNTS[profile]
    folder = write_digits_folder(Path(root) / ".cache" / "digits" / f"test-{count}", "test", count=count)
    return {"image_dir": str(folder)}


def _note() -> str:
    trained = trained_digits_cnn()
    s = DigitsTraining()
    return (f"The model is a CNN of four conv-BatchNorm-ReLU blocks and a GAP->linear head, trained here in "
            f"{s.epochs} epochs on {1797 - trained.n_test} digits (with random shifts and Gaussian noise of standard "
            f"deviation up to {s.noise:g}); its accuracy on the {trained.n_test} held-out digits is "
            f"{100 * trained.test_accuracy:.1f}%.")


DIGITS = register_domain(Domain(
    "digits", "handwritten digits",
    about=("**A second domain, not the paper's setting.** This page runs the chapter of the same name again, with "
           "its code, criteria and evidence rules unchanged, on handwritten digits: scikit-learn's bundled 8×8 "
           "digits upsampled to 32×32 greyscale, read from a labelled folder (one subfolder per class) the way your "
           "own data would be. Its verdicts stand beside the photos' in the findings table of the introduction; "
           "they say whether a claim carries over to another domain, not whether the paper's ImageNet numbers "
           "hold."),
    prepare=_prepare, note=_note))

_MODEL = {"model": "digits_cnn", "models": None, "weights": "pretrained"}
#: the costly Input-layer methods at settings the evidence rules accept: RISE with 100 masks, Occlusion with an
#: 8x8 window (a quarter of a digit's side; finer than the paper's 16x16 on 224x224 photos is allowed), and
#: IntGrad with the photos' cpu-profile 5 steps
_OVERRIDES = {"intgrad@input": {"steps": 5}, "rise@input": {"n_masks": 100},
              "occlusion@input": {"window": 8, "stride": 4}}
_ALL = {"input": "all", "final": "all"}
_METHODS = {"smoke": ["grad", "gradcam"], "cpu": _ALL, "paper": _ALL}  # smoke: the photos' smoke methods
_SIGMAS = {"smoke": [0.15, 0.33], "cpu": [0.15, 0.25, 0.33], "paper": [0.15, 0.25, 0.33]}
_GRIDS = {"threshold": 0.9, "n_grids": {"smoke": 2, "cpu": 25, "paper": 50}, "grid_size": None, "cells": "all"}


def _photos_trend_exclusions(stem: str, *more: str) -> list:
    """The σ trend runs on the methods the photos' chapter ``stem`` runs it on (the same units on both domains):
    its ``first_sigma_only`` list, and ``more``."""
    value = get(stem).params("cpu")["first_sigma_only"]
    return list(value) + [m for m in more if m not in value]


CHAPTERS = tuple(register(get(stem).on_domain(DIGITS, values)) for stem, values in (
    ("robustness", {**_MODEL, "model_scope": {}, "methods": _METHODS, "sigmas": _SIGMAS,
                    "method_overrides": _OVERRIDES,
                    "first_sigma_only": _photos_trend_exclusions("robustness", "rise@input", "occlusion@input"),
                    "trend_photos": None, "photos": None, "n_images": None}),
    ("localization", {**_MODEL, "qualify_models": None, **_GRIDS, "methods": _METHODS,
                      "sigmas": _SIGMAS, "method_overrides": _OVERRIDES,
                      "first_sigma_only": _photos_trend_exclusions("localization"), "photos": None, "n_images": None}),
    ("faithfulness", {**_MODEL, "methods": _METHODS, "method_overrides": _OVERRIDES, "photos": None,
                      "n_images": None}),
    ("tradeoff", {**_MODEL, "qualify_models": None, **_GRIDS, "methods": _METHODS,
                  "method_overrides": _OVERRIDES, "grid_method_overrides": None, "photos": None,
                  "grid_photos": None, "n_images": None, "grid_n_images": None}),
))
