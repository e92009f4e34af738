"""Seeded Gaussian noise, one independent stream per (seed, image id, sample index).

The noise of sample ``i`` of image ``image_id`` depends on nothing else: not on the batch it is drawn in,
the chunking, the order, a resumption, or the device the model runs on (it is always drawn on the CPU
with its own ``torch.Generator`` and then moved). This is what makes certificates reproducible.
Noise is in [0,1] pixel units and is added *before* the model's normalization, without clamping.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch

__all__ = ["sample_seed", "gaussian_noise", "noisy_copies"]


def sample_seed(seed: int, image_id: str, index: int, stream: str = "noise") -> int:
    """A 63-bit seed derived from (seed, image id, sample index, stream name) by BLAKE2b."""
    key = f"{stream}|{int(seed)}|{image_id}|{int(index)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def gaussian_noise(shape: Sequence[int], seed: int, image_id: str, indices: Sequence[int],
                   stream: str = "noise") -> torch.Tensor:
    """Standard normal noise of shape (len(indices), *shape), float32 on the CPU.

    Row j is a function of (seed, image_id, indices[j], stream) alone; other ``stream`` names give
    independent noise for other purposes (an attack's restarts, ball sampling, ...).
    """
    out = torch.empty((len(indices), *shape), dtype=torch.float32)
    gen = torch.Generator(device="cpu")
    for row, index in enumerate(indices):
        gen.manual_seed(sample_seed(seed, image_id, index, stream))
        out[row] = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
    return out


def noisy_copies(image: torch.Tensor, sigma: float, seed: int, image_id: str, indices: Sequence[int]) -> torch.Tensor:
    """x + sigma * eps_i for the given sample indices: (B, 3, H, W) in [0,1] pixel units, not clamped."""
    noise = gaussian_noise(image.shape, seed, image_id, indices)
    return image.unsqueeze(0).cpu() + float(sigma) * noise
