import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("CERTATTR_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny():
    from certattr.models.testing import tiny_model

    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_image():
    gen = torch.Generator().manual_seed(7)
    return torch.rand(3, 32, 32, generator=gen)
