"""Noise is a function of (seed, image id, sample index) alone."""
import torch

from certattr.noise import gaussian_noise, noisy_copies, sample_seed


def test_identical_across_batch_sizes_1_7_100():
    shape = (3, 16, 16)
    whole = gaussian_noise(shape, 0, "img", range(100))
    for bs in (1, 7, 100):
        parts = torch.cat([gaussian_noise(shape, 0, "img", range(s, min(s + bs, 100))) for s in range(0, 100, bs)])
        assert torch.equal(parts, whole)


def test_order_and_subsets_do_not_matter():
    shape = (3, 8, 8)
    whole = gaussian_noise(shape, 3, "a", range(20))
    shuffled = [13, 2, 19, 0, 7]
    assert torch.equal(gaussian_noise(shape, 3, "a", shuffled), whole[shuffled])


def test_streams_differ_by_seed_image_and_index():
    assert len({sample_seed(s, i, k) for s in (0, 1) for i in ("a", "b") for k in (0, 1)}) == 8
    a, b = gaussian_noise((3, 4, 4), 0, "a", [0, 1])
    assert not torch.equal(a, b)


def test_noise_is_standard_normal_and_not_clamped():
    eps = gaussian_noise((3, 64, 64), 1, "x", range(20))
    assert abs(float(eps.mean())) < 0.01 and abs(float(eps.std()) - 1) < 0.01
    x = torch.full((3, 64, 64), 0.99)
    noisy = noisy_copies(x, 0.25, 1, "x", range(20))
    assert float(noisy.max()) > 1.0 and torch.allclose(noisy - x, 0.25 * eps, atol=1e-6)
