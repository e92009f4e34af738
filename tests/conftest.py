import os

import pytest
import torch

# two torch threads, or the cores' share of each pytest-xdist worker (`make test` runs one worker per core)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = int(os.environ.get("CERTATTR_TEST_THREADS", max(1, min(2, (os.cpu_count() or 1) // _WORKERS))))
torch.set_num_threads(_THREADS)
# the processes a test starts (the chapters' papermill kernels, the CLI) take the same share: two OpenMP threads per
# process while another worker keeps the other core busy spin in barriers and run several times slower
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, str(_THREADS))
# weights trained here (the digits CNN) are cached for the test session, not in the user's home
if "CERTATTR_MODEL_CACHE" not in os.environ:
    import tempfile

    os.environ["CERTATTR_MODEL_CACHE"] = tempfile.mkdtemp(prefix="certattr-models-")


@pytest.fixture(scope="session")
def tiny():
    from certattr.models.testing import tiny_model

    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_image():
    gen = torch.Generator().manual_seed(7)
    return torch.rand(3, 32, 32, generator=gen)
