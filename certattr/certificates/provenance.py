"""What made a smoothed estimate: the fields the related certificates' estimates share."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SampledFrom"]


@dataclass
class SampledFrom:
    """The method and layer whose maps were smoothed, the class they explain, and the noise's seed and image id
    (with the model, these fix every sample: see :class:`certattr.engine.smoothing.SmoothedAttribution`)."""

    method: str
    layer: str
    target: int
    seed: int
    image_id: str
