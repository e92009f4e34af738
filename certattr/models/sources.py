"""Where a model comes from: a registry name, ``torchvision:NAME``, ``timm:NAME``, or a file; for the CLI and chapters.

:func:`load_source` turns one of these into a :class:`~certattr.models.registry.LoadedModel`:

* a registry name (``efficientnet_lite0``, ``resnet18``, ...): :func:`~certattr.models.registry.load_model`;
* ``torchvision:NAME`` (``torchvision:resnet50``): torchvision's builder with its default weights, loaded by
  torchvision's own weights API (downloaded once into ``$TORCH_HOME/hub/checkpoints``, found there offline); the
  normalization and input size come from the weights' transforms;
* ``timm:NAME``: ``timm.create_model(NAME, pretrained=True)`` (timm downloads through the Hugging Face hub once and
  finds its cache offline); normalization and input size from the model's ``pretrained_cfg``;
* a ``torch.export`` program (``file:model.pt2`` or any path ending in ``.pt2``, from ``torch.export.save``, exported
  with a dynamic batch dimension): loaded with ``torch.export.load`` and unflattened, so its module paths
  (``--final-layer``) are those of the network it was exported from, and its own graph is cut at the Final layer's
  output (:mod:`certattr.models.exported`: the head runs alone, and a GAP->linear head is applied in closed form,
  as for a module); a Final layer that records no operation in the program is one line naming those that do, and so
  is a program exported in train mode (BatchNorm batch statistics or dropout fixed in its graph);
* a whole pickled module (``file:model.pt``): **only** with ``trust_pickle=True`` (``--trust-pickle``), because
  unpickling runs whatever code the file names. A file of weights (a state dict) is loaded with
  ``torch.load(weights_only=True)``, which runs no code, as the weights of a named architecture:
  ``load_source("torchvision:resnet18", weights="my_weights.pt")``.

``weights`` is "pretrained", "random" (seeded, no download) or the path of a state-dict file. Every failure is one
:class:`~certattr.engine.validation.CertattrError` line naming what to change.
"""
from __future__ import annotations

import glob
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..engine.validation import CertattrError, check_device, check_image
from .data import IMAGE_SUFFIXES, Image, load_image_file
from .registry import MODELS, LoadedModel, load_model
from .execution import check_precision
from .exported import check_final_layer, program_network, train_mode_operations
from .wrap import wrap

__all__ = ["load_source", "load_from_arguments", "list_images", "folder_images", "read_classes", "guess_final_layer",
           "load_state_dict_file", "SOURCE_FORMS"]

SOURCE_FORMS = "a registry name, torchvision:NAME, timm:NAME, a .pt2 file (torch.export) or file:PATH"


def list_images(pattern: str) -> list[Path]:
    """The image files of a folder (its files with an image suffix, sorted; not recursive) or of a glob
    (sorted matches that are files)."""
    p = Path(pattern).expanduser()
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        what = f"{pattern!r} is a folder that holds no image file ({', '.join(sorted(IMAGE_SUFFIXES))})"
    else:
        found = sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
        what = f"{pattern!r} matches no file: give a folder, a glob such as 'scans/*.png', or an image file"
    if not found:
        raise CertattrError(what)
    return found


def folder_images(pattern: str, resize: int, crop: int, channels: int = 3) -> list[Image]:
    """The images of a folder or glob (:func:`list_images`) read at a model's size (shorter side to ``resize``,
    center crop ``crop``) with its ``channels``; ids are the file stems. An unreadable file is one warning line and
    is left out."""
    images = []
    for path in list_images(pattern):
        try:
            tensor = load_image_file(path, resize, crop)
        except CertattrError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            continue
        images.append(Image(path.stem, check_image(tensor, channels=channels), None, str(path)))
    if not images:
        raise CertattrError(f"no image of {pattern!r} could be read")
    return images


def read_classes(path) -> tuple[str, ...]:
    """Class names, one per line (blank lines and surrounding spaces dropped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CertattrError(f"classes file {str(path)!r} cannot be read ({type(err).__name__}): give a text file "
                            f"with one class name per line") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise CertattrError(f"classes file {str(path)!r} holds no class names: give one name per line")
    return names


def _existing_file(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        why = "is a folder" if p.is_dir() else "is not a regular file" if p.exists() else "does not exist"
        raise CertattrError(f"{what} {str(path)!r} {why}: give the path of a file")
    return p


def load_state_dict_file(path) -> dict:
    """A state dict from a file, with ``torch.load(weights_only=True)`` (no code runs)."""
    p = _existing_file(path, "weights file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ... on files that are not plain weights
        raise CertattrError(f"weights file {str(path)!r} cannot be loaded as plain weights (weights_only=True): "
                            f"{type(err).__name__}; save it with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CertattrError(f"weights file {str(path)!r} holds {type(state).__name__}, not a state dict of tensors")
    return state


def guess_final_layer(net: nn.Module, channels: int, size: int) -> str:
    """The last top-level module (or, inside the last spatial one, its last child) whose output is spatial
    (B, C, h, w) with h * w > 1: ``layer4`` of a ResNet, ``bn2`` of timm's EfficientNet."""
    outputs = {}
    handles = [m.register_forward_hook(lambda mod, a, out, name=name: outputs.setdefault(name, out))
               for name, m in net.named_children()]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, channels, size, size, device=next(net.parameters()).device))
    except Exception:
        pass  # the caller's wrap() reports a failing network in one line
    finally:
        for h in handles:
            h.remove()
    spatial = [name for name, out in outputs.items()
               if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1]
    if not spatial:
        raise CertattrError(f"no top-level module of {type(net).__name__} has a spatial output: give final_layer "
                            f"(--final-layer), a module path such as 'layer4' or 'features.19'")
    return spatial[-1]


def _torchvision(name: str, weights: str):
    import torchvision.models as tvm

    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        raise CertattrError(f"torchvision:{name} is unknown: give one of torchvision.models.list_models()") from None
    default = tvm.get_model_weights(name).DEFAULT
    transforms = default.transforms()
    normalization = (tuple(transforms.mean), tuple(transforms.std), int(transforms.crop_size[0]),
                     int(transforms.resize_size[0]))
    if weights == "pretrained":
        try:
            return builder(weights=default), normalization
        except (OSError, RuntimeError) as err:
            raise CertattrError(f"torchvision:{name}: the pretrained weights could not be loaded ({type(err).__name__}); "
                                f"torchvision downloads them once into $TORCH_HOME/hub/checkpoints: run once online, "
                                f"copy {default.url.rsplit('/', 1)[-1]} there, or use weights='random'") from None
    return builder(weights=None), normalization


def _timm(name: str, weights: str):
    import timm

    if name not in timm.list_models(pretrained=False):
        raise CertattrError(f"timm:{name} is unknown: give one of timm.list_models()")
    try:
        net = timm.create_model(name, pretrained=weights == "pretrained")
    except Exception as err:  # hub and file errors of timm's loader
        raise CertattrError(f"timm:{name}: the pretrained weights could not be loaded ({type(err).__name__}); timm "
                            f"downloads them once into the Hugging Face cache: run once online, or give a weights "
                            f"file, or use weights='random'") from None
    cfg = net.pretrained_cfg
    return net, (tuple(cfg["mean"]), tuple(cfg["std"]), int(cfg["input_size"][-1]), None)


def _exported(path: Path) -> nn.Module:
    try:
        program = torch.export.load(str(path))
    except Exception as err:  # a file that is not an export archive
        raise CertattrError(f"{str(path)!r} is not a torch.export program ({type(err).__name__}): save one with "
                            f"torch.export.save(torch.export.export(model, (x,), dynamic_shapes=...), path)") from None
    try:
        net = program_network(program, path.name)
    except Exception as err:  # torch.export.unflatten on a program it cannot rebuild as modules
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CertattrError(f"{str(path)!r} cannot be unflattened into its modules ({type(err).__name__}: {first}): "
                            f"export the nn.Module itself with torch.export.export") from None
    fixed = train_mode_operations(net)
    if fixed:
        raise CertattrError(f"{str(path)!r} was exported in train mode: its graph fixes {' and '.join(fixed)} in, "
                            f"which .eval() cannot change; export the network after model.eval()")
    return net


def _pickled(path: Path, trust_pickle: bool) -> nn.Module:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        obj = None  # not plain weights: a pickled module (or not a torch file at all)
    if isinstance(obj, dict):
        raise CertattrError(f"{str(path)!r} holds weights only (a state dict): name the architecture and give the "
                            f"file as its weights, e.g. --model torchvision:resnet18 --weights {path}")
    if not trust_pickle:
        raise CertattrError(f"{str(path)!r} is a pickled module: loading it runs code named in the file, so it needs "
                            f"--trust-pickle (trust_pickle=True); a .pt2 from torch.export or a state dict needs none")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CertattrError(f"{str(path)!r} cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(obj, nn.Module):
        raise CertattrError(f"{str(path)!r} holds {type(obj).__name__}, not a torch.nn.Module")
    return obj


def _check_dynamic_batch(net: nn.Module, channels: int, size: int, path: Path) -> None:
    try:
        with torch.no_grad():
            for batch in (1, 3):
                net(torch.zeros(batch, channels, size, size))
    except Exception:
        raise CertattrError(f"{str(path)!r} does not take batches of 1 and 3 images of ({channels}, {size}, {size}): "
                            f"export it with a dynamic batch dimension, dynamic_shapes={{'x': {{0: "
                            f"torch.export.Dim('batch')}}}}, at input size {size}") from None


def load_source(source: str, *, weights: str = "pretrained", device="cpu", final_layer: str | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                input_size: int | None = None, classes=None, drop_tokens: int = 0, trust_pickle: bool = False,
                seed: int = 0) -> LoadedModel:
    """The model ``source`` names (see the module docstring), wrapped at ``final_layer`` (default: guessed, see
    :func:`guess_final_layer`). ``classes``: names, or the path of a file with one per line. The precision of its
    passes and the compilation of RISE's and Occlusion's forward-only passes are set on the model it returns
    (:meth:`certattr.models.registry.LoadedModel.set_precision`, ``set_compilation``; :func:`load_from_arguments`
    does both from one dict of arguments)."""
    device = check_device(device)
    if not isinstance(source, str) or not source:
        raise CertattrError(f"model={source!r} is not allowed: give {SOURCE_FORMS}")
    if isinstance(classes, (str, Path)):
        classes = read_classes(classes)
    if source in MODELS:
        given = [flag for flag, value in (("final_layer", final_layer), ("mean", mean), ("std", std),
                                          ("input_size", input_size), ("classes", classes)) if value is not None]
        if given:
            raise CertattrError(f"{', '.join(given)} cannot be given with the preset model {source!r} (it declares them): "
                                f"they are for torchvision:, timm: and file models")
        if weights not in ("pretrained", "random"):
            raise CertattrError(f"weights={weights!r} is not allowed with the preset {source!r}: give pretrained or random")
        return load_model(source, weights, device, seed)
    kind, _, rest = source.partition(":")
    state = None
    if weights not in ("pretrained", "random"):
        state, weights = load_state_dict_file(weights), "random"
    if kind in ("torchvision", "timm") and rest:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net, (d_mean, d_std, d_size, d_resize) = (_torchvision if kind == "torchvision" else _timm)(rest, weights)
        if state is not None:
            try:
                net.load_state_dict(state)
            except RuntimeError as err:
                raise CertattrError(f"the weights file does not fit {source}: {str(err).splitlines()[0]}") from None
        name = source
    else:
        path = Path(rest if kind == "file" else source).expanduser()
        if kind != "file" and not path.suffix:
            raise CertattrError(f"model={source!r} is unknown: give {SOURCE_FORMS} (presets: {', '.join(MODELS)})")
        missing = [flag for flag, value in (("mean", mean), ("std", std), ("input_size", input_size)) if value is None]
        if missing:
            raise CertattrError(f"a model file needs {', '.join(missing)} (--mean, --std, --input-size): the "
                                f"normalization and image size it was trained with")
        path = _existing_file(str(path), "model file")
        net = _exported(path) if path.suffix == ".pt2" else _pickled(path, trust_pickle)
        if state is not None:
            net.load_state_dict(state)
        d_mean, d_std, d_size, d_resize, name = mean, std, input_size, None, path.name
        if path.suffix == ".pt2":
            _check_dynamic_batch(net, len(mean) if len(mean) == 1 else 3, int(input_size), path)
    mean, std = mean if mean is not None else d_mean, std if std is not None else d_std
    size = int(input_size if input_size is not None else d_size)
    channels = 1 if len(mean) == 1 else 3
    net = net.to(device)
    if final_layer is None:
        final_layer = guess_final_layer(net, channels, size)
    if isinstance(final_layer, str) and final_layer in dict(net.named_modules()):
        check_final_layer(net, final_layer)  # a program: the layer must record operations (other paths: wrap says)
    return wrap(net, final_layer, mean, std, size, classes, drop_tokens, name,
                resize=d_resize if input_size is None else None)


def load_from_arguments(arguments: dict) -> LoadedModel:
    """:func:`load_source` of ``arguments`` (its keywords, with ``source``), at their ``precision`` (default fp32)
    and ``compilation`` (default auto): the one dict the CLI and a folder job carry to every worker."""
    arguments = dict(arguments)
    precision, compilation = arguments.pop("precision", "fp32"), arguments.pop("compilation", "auto")
    check_precision(precision, check_device(arguments.get("device", "cpu")))
    return load_source(**arguments).set_precision(precision).set_compilation(compilation)

