"""What a chapter says about its images and classes, whether they are the bundled photos, an ImageNet folder or the
user's own (``image_dir``: a class folder tree, a CSV of (file, label) or plain images,
:func:`certattr.models.labelled.labelled_images`): the images its plan read for a model, the display name of a class,
and the sentences that say where the images and the targets come from."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..models.labelled import LabelledImages, model_class_names

__all__ = ["images_of", "class_namer", "images_text", "targets_text"]


def images_of(plan, net) -> list:
    """The images the chapter's plan read for ``net`` (:meth:`certattr.book.plans.PlanBuilder.images_for`): a
    :class:`~certattr.models.labelled.LabelledImages` for ``image_dir``, else a list of Images."""
    kept = plan.extras.get("images", {})
    if net.name not in kept:
        raise KeyError(f"the plan read no images for {net.name!r}")
    return kept[net.name]


def class_namer(plan, net) -> Callable[[int], str]:
    """``index -> name`` for ``net``'s classes: the user's folder or label names where the plan read a labelled
    ``image_dir``, else the model's own names (ImageNet's for the presets), else the index as text."""
    own = plan.extras.get("images", {}).get(getattr(net, "name", None))
    folder = own.class_names if isinstance(own, LabelledImages) else {}
    names = model_class_names(net) or ()

    def name(index: int) -> str:
        index = int(index)
        if index in folder:
            return str(folder[index])
        return str(names[index]) if 0 <= index < len(names) else str(index)

    return name


def images_text(images, image_dir) -> str | None:
    """Where the user's images come from, in words ("12 images of scans/, in 3 class folders (benign: 5, ...)"),
    or None when the chapter runs on the bundled photos or an ImageNet folder."""
    if not image_dir:
        return None
    folder = Path(str(image_dir)).name or str(image_dir)  # the folder's own name, not where this machine keeps it
    count = f"{len(images)} image{'' if len(images) == 1 else 's'} of {folder}"
    if isinstance(images, LabelledImages) and images.labelled:
        per_class = ", ".join(f"{images.name(c)}: {k}" for c, k in images.counts().items())
        how = "in class folders" if images.layout == "folders" else "labelled by the CSV file"
        return f"{count}, {how} ({per_class})"
    return count


def targets_text(images, imagenet_dir=None) -> str:
    """What the certificates explain: the images' labels or the model's top-1 classes."""
    if isinstance(images, LabelledImages) and images.labelled:
        return ("each image's label (its class folder)" if images.layout == "folders"
                else "each image's label (from the CSV file)")
    if imagenet_dir:
        return "each image's ground-truth label"
    return "the model's top-1 class of each image"
