"""What certattr adds around the model, made cheaper without changing a sample: the noise of a chunk drawn by several
threads, scaled and added in place, and memo keys hashed in the tensor's own memory order."""
import numpy as np
import pytest
import torch

from certattr.engine.memo import tensor_key
from certattr.engine.noise import Gaussian, gaussian_noise, noisy_copies, numpy_generator


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def row_by_row(shape, seed, image_id, indices):
    """The oracle: each row from its own generator, one after the other (the engine's definition of the noise)."""
    return np.stack([numpy_generator(seed, image_id, i).standard_normal(shape, dtype=np.float32) for i in indices])


@pytest.mark.parametrize("count", [1, 7, 8, 13, 40])
def test_noise_is_the_same_whatever_the_threads(threads, count):
    indices = [5 + 3 * i for i in range(count)]
    expected = row_by_row((3, 9, 11), 4, "img", indices)
    for n_threads in (1, 2, 3, 8):
        threads(n_threads)
        np.testing.assert_array_equal(gaussian_noise((3, 9, 11), 4, "img", indices).numpy(), expected)


def test_scaled_and_added_in_place_gives_the_float32_values_of_x_plus_sigma_eps(threads):
    threads(2)
    sigma, indices = 0.15, range(10)
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    eps = row_by_row((3, 8, 8), 0, "p", indices)
    scaled = np.float32(sigma) * eps  # float32 product, then the float32 sum: what x + sigma * eps always gave
    np.testing.assert_array_equal(Gaussian(sigma).draw((3, 8, 8), 0, "p", indices).numpy(), scaled)
    np.testing.assert_array_equal(noisy_copies(image, sigma, 0, "p", indices).numpy(), image.numpy()[None] + scaled)
    double = noisy_copies(image.double(), sigma, 0, "p", indices)  # another dtype is not added in place
    assert double.dtype == torch.float64
    np.testing.assert_array_equal(double.numpy(), image.double().numpy()[None] + scaled.astype(np.float64))


def test_memo_key_is_the_content_in_its_memory_order():
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    last = x.contiguous(memory_format=torch.channels_last)
    assert tensor_key("k", x) == tensor_key("k", x.clone())
    assert tensor_key("k", last) == tensor_key("k", last.clone())  # hashed as it lies, not copied to NCHW
    assert tensor_key("k", last) != tensor_key("k", x)  # another memory order: another key, never a wrong hit
    changed = last.clone()
    changed[1, 2, 3, 4] += 1
    assert tensor_key("k", changed) != tensor_key("k", last)
    assert tensor_key("k", x[:, :, 1:3]) == tensor_key("k", x[:, :, 1:3].contiguous())  # a strided view is copied
    # a class index expanded to a batch of one (the last chunk of one copy) or of four
    assert tensor_key("t", torch.as_tensor(3).expand(1)) == tensor_key("t", torch.tensor([3]))
    assert tensor_key("t", torch.as_tensor(3).expand(4)) == tensor_key("t", torch.tensor([3, 3, 3, 3]))
    assert tensor_key("b", x.bfloat16()) != tensor_key("b", x) and tensor_key("e", torch.empty(0))
