"""Perturbation methods: RISE and Occlusion, batched over (row, mask) pairs under ``torch.inference_mode``.

Both multiply the layer's tensor A (B, C, h, w) by masks M (h, w) shared by all channels: masking sets
values to 0 in the layer's space (the normalized image 0, i.e. the dataset mean colour, at the Input
layer; the zero activation at the Final layer). Maps are (B, h, w) at the layer's resolution. The masked passes
run through ``torch.compile`` where the model's compilation policy says the call's work repays the compile time
(:mod:`certattr.models.compilation`).
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..models.compilation import forward_runner
from ..models.registry import GapLinearHead
from ..engine.memo import BoundedMemo, tensor_key
from ..engine.noise import sample_seed
from ..engine.validation import CertattrError, check_finite_number, check_positive_int
from .base import AttributionMethod, check_pass_batch, pass_batch, register, target_logits

#: Occlusion (window, stride) per layer when not overridden (the reference settings).
OCCLUSION_DEFAULTS = {"input": (16, 8), "final": (5, 2)}


#: The masked passes of RISE and Occlusion do not depend on the target class: the four target cells of a 2x2
#: grid (same noisy copies) share them, so each grid pays for its masked passes once instead of four times (the
#: same logits bit for bit). Keyed by the layer's tensor and context, the weights, the module and the masks;
#: at most 256 MiB, and an entry over 64 MiB (e.g. 1000 masks at 224x224) is not kept.
MASKED_LOGITS = BoundedMemo(lambda chunks: sum(m.numel() * m.element_size() + l.numel() * l.element_size()
                                               for m, l in chunks), 256 * 2 ** 20, 64 * 2 ** 20)


def _masked_key(view, masks_id: tuple) -> str:
    model = getattr(view, "model", None)
    weights = model.fingerprint() if hasattr(model, "fingerprint") else str(id(view.module))
    prefix = repr((masks_id, weights, view.layer, type(view.module).__name__, bool(view.module.training)))
    return tensor_key(prefix, view.inputs, *view.context)


def shared_masked_forwards(view, count: int, masks: Callable[[int, int], torch.Tensor], batch: int | None,
                           masks_id: tuple) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`masked_forwards` through :data:`MASKED_LOGITS`: a repeated call on the same tensor and masks
    (another target of the same noisy copies) replays the stored (masks, logits) chunks."""
    key = _masked_key(view, (masks_id, count, batch))
    found = MASKED_LOGITS.get(key)
    if found is not None:
        yield from found
        return
    kept = []
    for chunk, logits in masked_forwards(view, count, masks, batch):
        kept.append((chunk, logits))
        yield chunk, logits
    MASKED_LOGITS.put(key, kept)


def masked_forwards(view, count: int, masks: Callable[[int, int], torch.Tensor],
                    batch: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Logits of every row of A times every mask, at most ``batch`` images per forward pass (a method's
    ``pass_batch``; None: the device's budget, see :func:`.base.pass_batch`); through a GAP->linear head, in
    closed form.

    ``masks(start, stop)`` returns masks ``start..stop-1`` as (k, h, w). Yields ``(masks (k, h, w),
    logits (B, k, classes))`` for consecutive mask chunks, so callers reduce as they go (bounded memory).
    """
    act = view.inputs
    rows = act.shape[0]
    if _closed_form(view):
        yield from _gap_linear_forwards(act, view.module.linear, count, masks)
        return
    forward, per_chunk, row_step = _masked_passes(view, count, batch)
    for start in range(0, count, per_chunk):
        chunk = masks(start, min(start + per_chunk, count)).to(act)
        k = chunk.shape[0]
        parts = []
        for r in range(0, rows, row_step):
            part = act[r:r + row_step]
            inputs = (part[:, None] * chunk[None, :, None]).flatten(0, 1)
            context = tuple(c[r:r + row_step].repeat_interleave(k, dim=0) for c in view.context)
            parts.append(forward(inputs, *context).view(part.shape[0], k, -1))
        yield chunk, torch.cat(parts)


def _closed_form(view) -> bool:
    """Are the masked passes of ``view`` computed in closed form (a GAP->linear head, see
    :func:`_gap_linear_forwards`) rather than by the model?"""
    return isinstance(view.module, GapLinearHead) and not view.context


def _masked_passes(view, count: int, batch: int | None) -> tuple[Callable[..., torch.Tensor], int, int]:
    """How the ``count`` masked passes of ``view``'s rows run: ``(forward, masks per pass, rows per pass)``.
    ``forward`` is ``view.forward``, or its compiled form where the model's compilation policy says this call's
    work repays the compile time (:func:`certattr.models.compilation.forward_runner`)."""
    rows = view.inputs.shape[0]
    batch = pass_batch(batch, view.inputs)
    per_chunk = max(1, batch // rows)  # masks per pass
    row_step = math.ceil(rows / math.ceil(rows / batch))  # equal parts of at most batch rows
    return forward_runner(view, count * rows, per_chunk * row_step), per_chunk, row_step


def _gap_linear_forwards(act: torch.Tensor, linear: torch.nn.Linear, count: int,
                         masks: Callable[[int, int], torch.Tensor], per_chunk: int = 256):
    """masked_forwards for a GAP->linear head, in closed form: the logits of A * M are
    W . mean_hw(A * M) + b = sum_p M_p (W . A_p) / hw + b, so W . A_p is computed once per position and each
    chunk of masks takes one matmul, instead of the linear layer once per mask (same values up to float
    summation order)."""
    h, w = act.shape[2:]
    per_position = act.flatten(2).transpose(1, 2) @ linear.weight.T / (h * w)  # (B, hw, classes)
    bias = linear.bias if linear.bias is not None else 0
    for start in range(0, count, per_chunk):
        chunk = masks(start, min(start + per_chunk, count)).to(act)
        yield chunk, chunk.flatten(1) @ per_position + bias  # (B, k, classes)


def _per_target(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """scores[b, j, target[b]] for scores (B, k, classes): (B, k)."""
    return scores.gather(2, target[:, None, None].expand(-1, scores.shape[1], 1))[..., 0]


# --- RISE ------------------------------------------------------------------------------------------
def rise_masks(count: int, grid: int, p: float, size: tuple[int, int], seed: int) -> Callable[[int, int], torch.Tensor]:
    """The RISE masks of Petsiuk et al. (2018), generated lazily: ``masks(start, stop) -> (k, h, w)``.

    Each mask is a (grid x grid) binary grid with P(1) = p, upsampled bilinearly (align_corners=False)
    to (grid + 1) * cell with cell = ceil(size / grid), then cropped to ``size`` at a random shift in
    [0, cell). The grids and shifts of all ``count`` masks are drawn at once on the CPU from NumPy's
    ``Generator(PCG64(SeedSequence(seed)))`` (the whole seed is used, e.g. the 128-bit
    :func:`certattr.engine.noise.sample_seed`; torch's CPU generator would keep only its low 32 bits): the grids
    first (``random((count, 1, grid, grid)) < p``), then the row and the column shifts. A mask does not
    depend on the chunking.
    """
    h, w = size
    cell = (math.ceil(h / grid), math.ceil(w / grid))
    up = ((grid + 1) * cell[0], (grid + 1) * cell[1])
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed))))
    grids = torch.from_numpy(rng.random((count, 1, grid, grid)) < p).float()
    shifts = torch.from_numpy(np.stack([rng.integers(0, c, count) for c in cell], axis=1))

    def masks(start: int, stop: int) -> torch.Tensor:
        upsampled = F.interpolate(grids[start:stop], size=up, mode="bilinear", align_corners=False)[:, 0]
        return torch.stack([m[dy:dy + h, dx:dx + w] for m, (dy, dx) in zip(upsampled, shifts[start:stop].tolist())])

    return masks


@register
class Rise(AttributionMethod):
    """RISE: sum_i softmax(f(A * M_i))_y M_i / (N p) over N = ``n_masks`` random masks.

    The masks are drawn at the layer's resolution from ``(seed, image_id)`` (stream "rise"), so every
    noisy copy of an image is explained with the same masks. ``pass_batch`` bounds the images per pass
    (None: the device's budget, see :func:`.base.pass_batch`).
    """

    name, title, family = "rise", "RISE", "perturbation"
    defaults = {"n_masks": 1000, "grid": 6, "p": 0.1, "pass_batch": None}
    uses_seed = True

    def validate_params(self):
        for key in ("n_masks", "grid"):
            check_positive_int(key, self.params[key])
        check_pass_batch("pass_batch", self.params["pass_batch"])
        p = check_finite_number("p", self.params["p"])
        if not 0 < p <= 1:
            raise CertattrError(f"p={self.params['p']!r} is not allowed: the keep probability must satisfy 0 < p <= 1")

    def explain(self, view, target, *, seed, image_id):
        n, p = self.params["n_masks"], float(self.params["p"])
        size = tuple(view.inputs.shape[2:])
        masks = rise_masks(n, self.params["grid"], p, size, sample_seed(seed, image_id, 0, stream="rise"))
        saliency = view.inputs.new_zeros((view.inputs.shape[0], *size))
        with torch.inference_mode():
            masks_id = ("rise", n, self.params["grid"], p, sample_seed(seed, image_id, 0, stream="rise"))
            for chunk, logits in shared_masked_forwards(view, n, masks, self.params["pass_batch"], masks_id):
                probs = _per_target(logits.softmax(dim=-1), target)
                saliency += torch.einsum("bk,khw->bhw", probs, chunk)
        return saliency / (n * p)


# --- Occlusion -------------------------------------------------------------------------------------
def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts 0, stride, 2*stride, ... that fit, plus one window flush with the end if the last one
    falls short of it, so that every position is covered."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@register
class Occlusion(AttributionMethod):
    """Per pixel, the mean over the windows covering it of y - y_occluded; y = the target logit.

    This is captum's convention (``captum.attr.Occlusion`` divides the summed drops by the number of windows
    that covered each position; tested against it). The reference divided the sum by the window *area*
    instead, so on a 7x7 Final map with 5x5 windows at stride 2 (4 windows) the centre 3x3, covered by all 4
    windows, outranked every other pixel whatever the image. Pixels no window covers get 0 (with
    :func:`window_starts` every pixel is covered). A square window of side ``window`` (clipped to the map) slides with ``stride``; occluding sets all
    channels inside it to 0 in the layer's space. ``window``/``stride`` None mean the layer's reference
    setting: 16/8 at the Input layer, 5/2 at the Final layer.
    """

    name, title, family = "occlusion", "Occlusion", "perturbation"
    defaults = {"window": None, "stride": None, "pass_batch": None}

    def validate_params(self):
        for key in ("window", "stride"):
            if self.params[key] is not None:
                check_positive_int(key, self.params[key])
        check_pass_batch("pass_batch", self.params["pass_batch"])

    def windows(self, layer: str, size: tuple[int, int]) -> tuple[int, int, Callable[[int, int], torch.Tensor]]:
        """The windows at ``layer`` on an (h, w) map: ``(count, area, keep)`` with ``keep(start, stop)`` the
        0/1 masks (k, h, w) of windows ``start..stop-1`` (0 inside the window), made on demand."""
        window, stride = OCCLUSION_DEFAULTS[layer]
        window, stride = self.params["window"] or window, self.params["stride"] or stride
        h, w = size
        wh, ww = min(window, h), min(window, w)
        corners = [(y0, x0) for y0 in window_starts(h, wh, stride) for x0 in window_starts(w, ww, stride)]

        def keep(start: int, stop: int) -> torch.Tensor:
            masks = torch.ones(stop - start, h, w)
            for mask, (y0, x0) in zip(masks, corners[start:stop]):
                mask[y0:y0 + wh, x0:x0 + ww] = 0
            return masks

        return len(corners), wh * ww, keep

    def explain(self, view, target, *, seed, image_id):
        count, area, keep = self.windows(view.layer, tuple(view.inputs.shape[2:]))
        saliency = view.inputs.new_zeros((view.inputs.shape[0], *view.inputs.shape[2:]))
        coverage = view.inputs.new_zeros(tuple(view.inputs.shape[2:]))  # windows covering each pixel
        with torch.inference_mode():
            # the unoccluded logits run the same way (eager or compiled) as the occluded ones they are compared to
            forward = view.forward if _closed_form(view) else _masked_passes(view, count, self.params["pass_batch"])[0]
            y = target_logits(forward(view.inputs), target)
            masks_id = ("occlusion", view.layer, count, area, self.params["window"], self.params["stride"])
            for chunk, logits in shared_masked_forwards(view, count, keep, self.params["pass_batch"], masks_id):
                drop = y[:, None] - _per_target(logits, target)
                saliency += torch.einsum("bk,khw->bhw", drop, 1 - chunk)
                coverage += (1 - chunk).sum(dim=0)
        return torch.where(coverage > 0, saliency / coverage.clamp_min(1), torch.zeros_like(saliency))
