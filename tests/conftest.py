import os

import pytest
import torch

# two torch threads, or the cores' share of each pytest-xdist worker (`make test` runs one worker per core)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(int(os.environ.get("CERTATTR_TEST_THREADS", max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))))


@pytest.fixture(scope="session")
def tiny():
    from certattr.models.testing import tiny_model

    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_image():
    gen = torch.Generator().manual_seed(7)
    return torch.rand(3, 32, 32, generator=gen)
