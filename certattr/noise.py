"""Seeded Gaussian noise, one independent stream per (seed, image id, sample index).

The noise of sample ``i`` of image ``image_id`` depends on nothing else: not on the batch it is drawn in,
the chunking, the order, a resumption, or the device the model runs on (it is always drawn on the CPU
with its own generator and then moved). This is what makes certificates reproducible.
Noise is in [0,1] pixel units and is added *before* the model's normalization, without clamping.

**Generator.** Each (stream, seed, image id, index) is hashed with BLAKE2b to a 128-bit integer, and that
whole integer seeds NumPy's ``PCG64`` through a ``SeedSequence``. torch's CPU ``Generator.manual_seed``
keeps only the low 32 bits of its seed, so two different 63-bit seeds that share those bits give the same
noise (``gaussian_noise((3, 8, 8), 0, "img", [25486, 46592])`` did, before this was changed); with the full
128-bit key, two streams collide only with the probability of a 128-bit hash collision.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch

__all__ = ["sample_seed", "numpy_generator", "gaussian_noise", "noisy_copies"]

SEED_BYTES = 16  #: BLAKE2b digest size of a stream key (128 bits, all of them used by the generator)


def sample_seed(seed: int, image_id: str, index: int, stream: str = "noise") -> int:
    """A 128-bit seed derived from (seed, image id, sample index, stream name) by BLAKE2b."""
    key = f"{stream}|{int(seed)}|{image_id}|{int(index)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=SEED_BYTES).digest(), "little")


def numpy_generator(seed: int, image_id: str = "", index: int = 0, stream: str = "noise") -> np.random.Generator:
    """NumPy ``Generator(PCG64(SeedSequence(sample_seed(...))))``: the whole 128-bit key seeds the stream."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(sample_seed(seed, image_id, index, stream))))


def gaussian_noise(shape: Sequence[int], seed: int, image_id: str, indices: Sequence[int],
                   stream: str = "noise") -> torch.Tensor:
    """Standard normal noise of shape (len(indices), *shape), float32 on the CPU.

    Row j is a function of (seed, image_id, indices[j], stream) alone; other ``stream`` names give
    independent noise for other purposes (an attack's restarts, ball sampling, ...).
    """
    shape = tuple(int(s) for s in shape)
    indices = list(indices)
    out = np.empty((len(indices), *shape), dtype=np.float32)
    for row, index in enumerate(indices):
        numpy_generator(seed, image_id, index, stream).standard_normal(shape, dtype=np.float32, out=out[row])
    return torch.from_numpy(out)


def noisy_copies(image: torch.Tensor, sigma: float, seed: int, image_id: str, indices: Sequence[int]) -> torch.Tensor:
    """x + sigma * eps_i for the given sample indices: (B, 3, H, W) in [0,1] pixel units, not clamped."""
    noise = gaussian_noise(image.shape, seed, image_id, indices)
    return image.unsqueeze(0).cpu() + float(sigma) * noise
