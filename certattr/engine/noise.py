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
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from .validation import CertattrError, check_interval, check_sigma

__all__ = ["sample_seed", "numpy_generator", "gaussian_noise", "noisy_copies", "uniform_ball_noise", "Gaussian",
           "UniformBall", "as_noise"]

SEED_BYTES = 16  #: BLAKE2b digest size of a stream key (128 bits, all of them used by the generator)
ROWS_PER_THREAD = 4  #: a chunk's rows are drawn by several threads only from this many rows per thread on
#: ... and from this many values per thread on: for small images (a 32x32 digit is 1,024 values a row) starting the
#: threads costs more than the draws (10 rows of a digit: 0.87 ms with two threads, 0.23 ms in the calling thread)
VALUES_PER_THREAD = 2 ** 16


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

    def draw(rows: range) -> None:
        for row in rows:
            numpy_generator(seed, image_id, indices[row], stream).standard_normal(shape, dtype=np.float32, out=out[row])

    # Each row has its own generator, so rows can be drawn in any order and by any thread with the same values;
    # NumPy releases the GIL while it draws. As many threads as torch uses for the model (a pool per call: a pool
    # kept between calls would hang in a process forked after it started).
    threads = min(torch.get_num_threads(), len(indices) // ROWS_PER_THREAD,
                  len(indices) * math.prod(shape) // VALUES_PER_THREAD)
    if threads <= 1:
        draw(range(len(indices)))
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(draw, [range(t, len(indices), threads) for t in range(threads)]))
    return torch.from_numpy(out)


def noisy_copies(image: torch.Tensor, sigma: float, seed: int, image_id: str, indices: Sequence[int]) -> torch.Tensor:
    """x + sigma * eps_i for the given sample indices: (B, 3, H, W) in [0,1] pixel units, not clamped."""
    noise = gaussian_noise(image.shape, seed, image_id, indices).mul_(float(sigma))  # in place: same values
    image = image.unsqueeze(0).cpu()
    return noise.add_(image) if noise.dtype == image.dtype else image + noise


def uniform_ball_noise(shape, r: float, seed: int, image_id: str, indices, stream: str = "ball") -> torch.Tensor:
    """Exact uniform samples of the l2 ball B(0; r) in prod(shape) dimensions: (len(indices), *shape) float32.

    Row j is r * U^(1/d) * z/||z|| with z ~ N(0, I), U ~ Uniform(0, 1), drawn (in float64) from NumPy PCG64
    generators keyed by the whole 128-bit BLAKE2b hash of (seed, image_id, indices[j], stream) alone
    (:func:`numpy_generator`, streams "<stream>-direction" and "<stream>-radius"; another ``stream`` name gives
    independent samples for another purpose, e.g. an attack's steps).
    """
    r = check_interval("r", r, 0, what="the smoothing radius", unit="(l2, [0,1] pixel units)")
    shape = tuple(int(s) for s in shape)
    d = int(np.prod(shape))
    out = torch.empty((len(indices), *shape), dtype=torch.float32)
    for row, index in enumerate(indices):
        z = numpy_generator(seed, image_id, index, stream=f"{stream}-direction").standard_normal(d)
        u = numpy_generator(seed, image_id, index, stream=f"{stream}-radius").random()
        radius = r * float(u) ** (1.0 / d)
        out[row] = torch.from_numpy(z * (radius / float(np.linalg.norm(z)))).reshape(shape).float()
    return out


# --- the noise distributions of the engine ----------------------------------------------------------------------
class Gaussian:
    """eps ~ N(0, sigma^2 I) in [0,1] pixel units: the paper's smoothing (and Sparsified SmoothGrad's)."""

    def __init__(self, sigma: float):
        self.sigma = check_sigma(sigma)

    def draw(self, shape, seed: int, image_id: str, indices) -> torch.Tensor:
        """(len(indices), *shape) float32 on the CPU: sigma * eps_i, each row a function of its index alone."""
        return gaussian_noise(shape, seed, image_id, indices).mul_(float(self.sigma))  # = sigma * eps, no copy

    def identity(self) -> dict:
        return {"sigma": self.sigma}  # the key of every Gaussian cache entry since the first version

    def __repr__(self) -> str:
        return f"Gaussian(sigma={self.sigma:g})"


class UniformBall:
    """eta uniform in the l2 ball B(0; r) of the input's 3*H*W dimensions ([0,1] pixel units): the smoothing of
    the cosine certificate (arXiv 2405.06361)."""

    def __init__(self, r: float):
        self.r = check_interval("r", r, 0, what="the smoothing radius", unit="(l2, [0,1] pixel units)")

    def draw(self, shape, seed: int, image_id: str, indices) -> torch.Tensor:
        return uniform_ball_noise(shape, self.r, seed, image_id, indices)

    def identity(self) -> dict:
        return {"noise": "uniform-ball", "r": self.r}

    def __repr__(self) -> str:
        return f"UniformBall(r={self.r:g})"


def as_noise(noise) -> "Gaussian | UniformBall":
    """A noise distribution: a number is Gaussian noise of that sigma."""
    if isinstance(noise, (Gaussian, UniformBall)):
        return noise
    if isinstance(noise, (int, float, np.integer, np.floating)) and not isinstance(noise, bool):
        return Gaussian(noise)
    raise CertattrError(f"noise={noise!r} is not allowed: give sigma (a number > 0), Gaussian(sigma) or UniformBall(r)")
