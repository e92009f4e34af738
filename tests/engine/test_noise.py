"""Noise is a function of (seed, image id, sample index) alone."""
import torch

from certattr.engine.noise import gaussian_noise, noisy_copies, sample_seed


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


def test_seeds_use_128_bits_and_torch_would_have_collided():
    """The two indices below share the low 32 bits of their old 63-bit seeds (torch's CPU generator keeps
    only those), so they drew identical noise; the 128-bit keys seed different streams."""
    import hashlib

    def old_seed(index):
        key = f"noise|0|img|{index}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    assert old_seed(25486) != old_seed(46592) and old_seed(25486) % 2**32 == old_seed(46592) % 2**32
    gen = torch.Generator()
    same = [torch.randn(3, 8, 8, generator=gen.manual_seed(old_seed(i))) for i in (25486, 46592)]
    assert torch.equal(*same)  # the defect this guards against
    assert sample_seed(0, "img", 25486).bit_length() > 64
    a, b = gaussian_noise((3, 8, 8), 0, "img", [25486, 46592])
    assert not torch.equal(a, b)


def test_no_two_of_100000_indices_share_a_stream():
    """Among 10^5 sample indices of one image (a 32-bit seed space collides with probability ~0.69 here),
    the first four values of every stream are distinct."""
    n = 100_000
    heads = gaussian_noise((4,), 0, "img", range(n))
    assert len({row.numpy().tobytes() for row in heads}) == n


def test_rows_match_a_direct_pcg64_draw():
    """The documented generator, rebuilt here from hashlib and NumPy: row j is PCG64(SeedSequence(the
    little-endian 16-byte BLAKE2b digest of 'stream|seed|image|index')).standard_normal(float32)."""
    import hashlib

    import numpy as np

    for stream, seed, image, index in (("noise", 0, "img", 3), ("attack", 7, "cat", 2**40)):
        key = int.from_bytes(hashlib.blake2b(f"{stream}|{seed}|{image}|{index}".encode(), digest_size=16).digest(),
                             "little")
        want = np.random.Generator(np.random.PCG64(np.random.SeedSequence(key))).standard_normal((3, 5),
                                                                                                 dtype=np.float32)
        got = gaussian_noise((3, 5), seed, image, [index], stream=stream)[0]
        assert np.array_equal(got.numpy(), want)
