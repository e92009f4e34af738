"""Your own labelled images: a folder with one subfolder per class, a CSV of (file, label), or plain images.

:func:`labelled_images` reads one of three layouts at a model's size and channels and returns the images with
their labels (:class:`~certattr.models.data.Image`, ``label`` the class index), which the chapters, the CLI and
the engine use as the targets (a label goes to :func:`certattr.engine.targets.resolve_target`):

* **a class folder tree** (torchvision's ``ImageFolder`` layout): ``root/<class name>/<image>`` (images may sit in
  deeper folders of their class). Where the model has class names (``wrap(..., classes=...)``, ``--classes FILE``,
  the ImageNet names of the ImageNet presets and of ImageNet-sized ``torchvision:``/``timm:`` models), each folder's
  name must be one of them and the class index is its position there; otherwise folders named by integers are those
  class indices (``0/``, ``1/``, ...: some classes may be missing), and other names get their position among the
  sorted folder names (torchvision's rule), which needs exactly one folder per class of the model;
* **a CSV file** with a header row naming the columns ``file`` and ``label`` (other columns are ignored): ``file``
  relative to the CSV's folder (or absolute; without a suffix the image file of that stem), ``label`` a class
  index or a class name (names map as folder names do);
* **a plain folder or glob** of images (no labels): the targets are the model's top-1 classes, as before.

Every problem with the labels is one :class:`~certattr.engine.validation.CertattrError` line naming what to
change: a class the model does not have, an empty class folder, a CSV row naming a missing image, a CSV without
the two columns, a folder holding both images and class folders. An image file that cannot be read is one
warning line and is left out (as for a plain folder). Ids are the file stems (with their folders where two
files share a stem).

Shapes: every image (channels, crop, crop) float32 in [0, 1], channels 1 or 3 (the model's).
"""
from __future__ import annotations

import csv
import glob
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..engine.validation import CertattrError, check_image
from .data import IMAGE_SUFFIXES, Image, load_image_file
from .registry import MODELS

__all__ = ["LabelledImages", "LabelledFiles", "labelled_images", "labelled_files", "model_class_names", "is_labelled",
           "FILE_COLUMNS", "LABEL_COLUMNS"]

#: the CSV column names accepted for the image file and for its label (case-insensitive)
FILE_COLUMNS = ("file", "filename", "path", "image")
LABEL_COLUMNS = ("label", "class", "target")


class LabelledImages(list):
    """A list of :class:`~certattr.models.data.Image` (label: the class index, or None for a plain folder) with
    what the labels mean: ``layout`` ("folders", "csv" or "plain"), ``source`` (the path given) and
    ``class_names`` ({class index: display name} of the classes that occur: the model's name where it has one,
    else the folder's or the CSV's)."""

    def __init__(self, images=(), layout: str = "plain", source: str = "", class_names: dict | None = None):
        super().__init__(images)
        self.layout, self.source, self.class_names = layout, str(source), dict(class_names or {})

    @property
    def labelled(self) -> bool:
        return self.layout != "plain"

    def counts(self) -> dict:
        """{class index: number of images}, classes in ascending order (empty for a plain folder)."""
        out: dict = {}
        for im in self:
            if im.label is not None:
                out[int(im.label)] = out.get(int(im.label), 0) + 1
        return dict(sorted(out.items()))

    def subset(self, images) -> "LabelledImages":
        """Some of these images (a list of them), with the same layout, source and class names."""
        return LabelledImages(images, self.layout, self.source, self.class_names)

    def first(self, count: int | None) -> "LabelledImages":
        """The first ``count`` images (all of them for None)."""
        return self.subset(self[:count] if count else self)

    def one_per_class(self) -> "LabelledImages":
        """The first image of each class, in class order (the first two images of a plain folder)."""
        if not self.labelled:
            return self.first(2)
        firsts: dict = {}
        for im in self:
            firsts.setdefault(int(im.label), im)
        return self.subset([firsts[c] for c in sorted(firsts)])

    def name(self, index: int) -> str:
        """The display name of class ``index`` (its index as text where no name is known)."""
        return str(self.class_names.get(int(index), index))


def model_class_names(model) -> tuple | None:
    """The class names of a certattr model, one per logit, or None: the names it was wrapped with (``classes=``,
    ``--classes``); for the presets and ``torchvision:``/``timm:`` models with 1000 logits, torchvision's ImageNet
    names (shipped with torchvision, no download)."""
    spec = getattr(model, "spec", None)
    names = (getattr(spec, "notes", None) or {}).get("classes") if spec is not None else None
    if names:
        return tuple(str(n) for n in names)
    name = str(getattr(model, "name", ""))
    if (name in MODELS or name.startswith(("torchvision:", "timm:"))) and _n_classes(model) == 1000:
        from torchvision.models import ResNet18_Weights  # torchvision loads here, not on `import certattr`

        return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    return None


def _n_classes(model) -> int | None:
    return int(model.head_classes()) if hasattr(model, "head_classes") else None


def is_labelled(path) -> bool:
    """Whether ``path`` names labelled images: a CSV file, or a folder whose images all sit in class folders."""
    p = Path(str(path)).expanduser()
    if p.is_file():
        return p.suffix.lower() == ".csv"
    return p.is_dir() and not _images_in(p) and bool(_class_folders(p))


def _is_image(f: Path) -> bool:
    return f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in found if _is_image(f) and not any(part.startswith(".")
                                                               for part in f.relative_to(folder).parts))


def _class_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().casefold()


@dataclass
class _Classes:
    """How the labels of one folder or CSV become class indices."""

    n_classes: int | None
    names: tuple | None  #: the model's (or the caller's) names, one per class; None: not known
    where: str  #: the path, for the messages

    def by_name(self, given: Sequence[str], what: str) -> dict:
        """{given name: class index} for the names ``given`` (folder names, or the CSV's label names)."""
        given = list(dict.fromkeys(given))
        if self.names:
            exact = {}
            for i, n in enumerate(self.names):
                exact.setdefault(n, []).append(i)
            loose: dict = {}
            for i, n in enumerate(self.names):
                loose.setdefault(_normal(n), []).append(i)
            out = {}
            for g in given:
                hits = exact.get(g) or loose.get(_normal(g)) or []
                if not hits:
                    raise CertattrError(f"{what} {g!r} in {self.where} is not a class of the model (its "
                                        f"{len(self.names)} classes: {_listing(self.names)}): name it as one of them, "
                                        f"or give a CSV of (file, label index)")
                if len(hits) > 1:
                    raise CertattrError(f"{what} {g!r} in {self.where} names {len(hits)} classes of the model "
                                        f"({', '.join(map(str, hits))}): give a CSV of (file, label index) instead")
                out[g] = hits[0]
            return out
        if given and all(re.fullmatch(r"\d+", g) for g in given):  # folders named by their class indices
            for g in given:
                self.index(int(g), f"{what} {g!r} in {self.where}")
            return {g: int(g) for g in given}
        order = sorted(given)
        if self.n_classes is not None and len(order) != self.n_classes:
            if len(order) > self.n_classes:
                extra = order[self.n_classes]
                why = (f"{what} {extra!r} (position {self.n_classes} in sorted order) is a class the model does not "
                       f"have: it has {self.n_classes} classes (0..{self.n_classes - 1})")
            else:
                why = (f"the model has {self.n_classes} classes, and without class names the i-th {what} in sorted "
                       f"order is class i (torchvision's ImageFolder), which needs one per class")
            raise CertattrError(f"{self.where} has {len(order)} {what}s ({_listing(order)}): {why}; give the model's "
                                f"class names (classes=, --classes FILE) to map them by name, or a CSV of (file, "
                                f"label index)")
        return {g: i for i, g in enumerate(order)}

    def index(self, value: int, where: str) -> int:
        if self.n_classes is not None and not 0 <= value < self.n_classes:
            raise CertattrError(f"{where}: label {value} is a class the model does not have: it has "
                                f"{self.n_classes} classes (0..{self.n_classes - 1})")
        if value < 0:
            raise CertattrError(f"{where}: label {value} is not allowed: a class index is >= 0")
        return value


def _listing(names: Sequence, most: int = 8) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:most]) + (f", ... ({len(names) - most} more)" if len(names) > most else "")


def _ids(paths: Sequence[Path], root: Path) -> list[str]:
    """File stems, made unique with their folders (``<folder>__<stem>``) where two files share a stem."""
    def candidate(path: Path, depth: int) -> str:
        if depth == 0:
            return path.stem
        parts = path.with_suffix("").parts
        return "__".join(parts[-depth - 1:])

    depth = [0] * len(paths)
    while True:
        ids = [candidate(p, d) for p, d in zip(paths, depth)]
        clashes = {i for i in ids if ids.count(i) > 1}
        if not clashes or all(d >= len(p.parts) for p, d in zip(paths, depth)):
            return ids
        depth = [d + 1 if i in clashes else d for i, d in zip(ids, depth)]


def _read(entries, ids, resize, crop, channels) -> list[Image]:
    """The images of ``entries`` ((path, label) pairs); an unreadable file is one warning line and is left out."""
    images = []
    for (path, label), image_id in zip(entries, ids):
        try:
            tensor = load_image_file(path, resize, crop)
        except CertattrError as err:
            warnings.warn(f"skipped: {err}", stacklevel=3)
            continue
        images.append(Image(image_id, check_image(tensor, channels=channels), label, str(path)))
    return images


def _folder_tree(root: Path, classes: _Classes) -> tuple[list, dict]:
    """((path, label) pairs, {label: folder name}) of a class folder tree."""
    folders = _class_folders(root)
    found = {d.name: _images_in(d, recursive=True) for d in folders}
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise CertattrError(f"class folder {str(root / empty[0])!r} holds no image file "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))})" + (f" (nor do {len(empty) - 1} other class "
                                                                       f"folders)" if len(empty) > 1 else "")
                            + ": put the class's images in it, or remove it")
    index = classes.by_name(list(found), "class folder")
    entries = [(f, index[name]) for name, files in found.items() for f in files]
    return entries, {index[name]: name for name in found}


def _csv_table(path: Path, classes: _Classes) -> tuple[list, dict]:
    """((path, label) pairs, {label: label name}) of a CSV of (file, label)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise CertattrError(f"label file {str(path)!r} cannot be read ({type(err).__name__}): give a UTF-8 CSV "
                            f"with the columns file,label") from None
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(), dialect)
    header = next(reader, None)
    columns = [c.strip().casefold() for c in header or []]
    file_col = next((columns.index(c) for c in FILE_COLUMNS if c in columns), None)
    label_col = next((columns.index(c) for c in LABEL_COLUMNS if c in columns), None)
    if file_col is None or label_col is None:
        raise CertattrError(f"label file {str(path)!r} has the columns {header or []}: give a header row with the "
                            f"columns file and label (one row per image: its file, relative to the CSV's folder, "
                            f"and its class index or name)")
    rows = []
    for lineno, row in enumerate(reader, 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(file_col, label_col):
            raise CertattrError(f"{path}:{lineno}: the row {row} has no {'file' if len(row) <= file_col else 'label'} "
                                f"value: give file,label on every row")
        name, label = row[file_col].strip(), row[label_col].strip()
        if not name or not label:
            raise CertattrError(f"{path}:{lineno}: the row {row} has an empty {'file' if not name else 'label'}: "
                                f"give file,label on every row")
        rows.append((lineno, name, label))
    if not rows:
        raise CertattrError(f"label file {str(path)!r} lists no images: give one row file,label per image")
    entries, seen, names = [], {}, [label for _, _, label in rows if not re.fullmatch(r"-?\d+", label)]
    index = classes.by_name(names, "label") if names else {}
    shown: dict = {}
    for lineno, name, label in rows:
        file = _image_file(path.parent, name, f"{path}:{lineno}")
        if file in seen:
            raise CertattrError(f"{path}:{lineno}: {name!r} is listed twice (also on line {seen[file]}): give each "
                                f"image once")
        seen[file] = lineno
        if re.fullmatch(r"-?\d+", label):
            value = classes.index(int(label), f"{path}:{lineno}")
        else:
            value = index[label]
            shown.setdefault(value, label)
        entries.append((file, value))
    return entries, shown


def _image_file(folder: Path, name: str, where: str) -> Path:
    """The image file a CSV row names (relative to the CSV's folder; a name without a suffix finds the image file
    of that stem); a missing one is one line."""
    file = Path(name).expanduser()
    file = file if file.is_absolute() else folder / file
    if file.is_file():
        return file
    if not file.suffix and file.parent.is_dir():
        matches = sorted(f for f in file.parent.glob(glob.escape(file.name) + ".*") if _is_image(f))
        if len(matches) == 1:
            return matches[0]
    why = "is a folder" if file.is_dir() else "does not exist"
    raise CertattrError(f"{where}: the image {name!r} {why} (looked for {str(file)!r}): give the path of an image "
                        f"file relative to the CSV's folder")


def _plain_files(pattern: str) -> list[Path]:
    p = Path(pattern).expanduser()
    if p.is_dir():
        files = _images_in(p)
        if not files:
            raise CertattrError(f"{pattern!r} is a folder that holds no image file ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                                f"and no class folder: give a folder of images, a folder with one subfolder per class, "
                                f"or a CSV of (file, label)")
    else:
        files = sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
        if not files:
            raise CertattrError(f"{pattern!r} matches no file: give a folder, a glob such as 'scans/*.png', a folder "
                                f"with one subfolder per class, or a CSV of (file, label)")
    return files


@dataclass(frozen=True)
class LabelledFiles:
    """The image files of a labelled (or plain) folder, before any is read: ``files`` (paths, sorted), ``labels``
    (class index per file, None for a plain folder), ``ids`` (unique image ids: the file stems, with their folders
    where two files share a stem), ``layout`` ("folders", "csv" or "plain"), ``source`` (the path given) and
    ``class_names`` ({class index: display name} of the classes that occur)."""

    files: tuple
    labels: tuple
    ids: tuple
    layout: str
    source: str
    class_names: dict

    def __len__(self) -> int:
        return len(self.files)


def _class_setup(model, classes, n_classes):
    if model is not None and n_classes is None:
        n_classes = _n_classes(model)
    names = tuple(str(c) for c in classes) if classes is not None else (model_class_names(model) if model is not None
                                                                        else None)
    if names is not None and n_classes is not None and len(names) != n_classes:
        raise CertattrError(f"classes has {len(names)} names but the model has {n_classes} classes: give one name "
                            f"per class")
    return (len(names) if names is not None and n_classes is None else n_classes), names


def labelled_files(path, model=None, *, classes: Sequence[str] | None = None,
                   n_classes: int | None = None) -> LabelledFiles:
    """The image files of ``path`` and their labels (see :func:`labelled_images`), checked, without reading a pixel:
    for a folder of many images (the CLI reads each image only when it certifies it)."""
    n_classes, names = _class_setup(model, classes, n_classes)
    text = str(path)
    p = Path(text).expanduser()
    if p.is_file() and p.suffix.lower() == ".csv":
        layout, (entries, shown) = "csv", _csv_table(p, _Classes(n_classes, names, repr(text)))
        root = p.parent
    elif p.is_dir() and _class_folders(p) and not _images_in(p):
        layout, (entries, shown) = "folders", _folder_tree(p, _Classes(n_classes, names, repr(text)))
        root = p
    elif p.is_dir() and _images_in(p) and any(_images_in(d, recursive=True) for d in _class_folders(p)):
        raise CertattrError(f"{text!r} holds both image files and folders of images: give a folder with one subfolder "
                            f"per class (and no images beside them), or a folder of images only")
    else:
        files = _plain_files(text)
        ids = [f.stem for f in files] if len({f.stem for f in files}) == len(files) else _ids(files, p)
        return LabelledFiles(tuple(files), (None,) * len(files), tuple(ids), "plain", text, {})
    files = [f for f, _ in entries]
    ids = _ids([f.relative_to(root) if f.is_relative_to(root) else f for f in files], root)
    labels = sorted({label for _, label in entries})
    display = {i: (names[i] if names else shown.get(i, str(i))) for i in labels}
    return LabelledFiles(tuple(files), tuple(label for _, label in entries), tuple(ids), layout, text, display)


def labelled_images(path, model=None, *, classes: Sequence[str] | None = None, n_classes: int | None = None,
                    resize: int | None = None, crop: int | None = None, channels: int | None = None) -> LabelledImages:
    """The images of ``path`` (a class folder tree, a CSV of (file, label), or a plain folder or glob; see the module
    docstring) with their labels as class indices, read at ``model``'s size and channels.

    ``model``: a certattr model (:func:`certattr.wrap`, :func:`certattr.load_model`); it gives ``resize``, ``crop``,
    ``channels`` (1 or 3), its number of classes (every label is checked against it) and its class names (folders
    and label names map to them). Without a model, give ``resize`` and ``crop`` (default 256 and 224), ``channels``
    (default 3) and optionally ``n_classes``. ``classes``: class names, one per class of the model, that replace the
    model's own (or name the classes of a model that has none).

    Returns a :class:`LabelledImages`: Images (channels, crop, crop) in [0, 1] with ``label`` the class index (None
    for a plain folder), in sorted file order, and ``class_names``.
    """
    if model is not None:
        resize, crop, channels = resize or model.spec.resize, crop or model.spec.crop, channels or model.channels
    resize, crop, channels = int(resize or 256), int(crop or 224), int(channels or 3)
    found = labelled_files(path, model, classes=classes, n_classes=n_classes)
    images = _read(zip(found.files, found.labels), found.ids, resize, crop, channels)
    if not images:
        raise CertattrError(f"no image of {found.source!r} could be read")
    kept = {int(im.label) for im in images if im.label is not None}
    return LabelledImages(images, found.layout, found.source,
                          {i: n for i, n in found.class_names.items() if i in kept})
