"""Shared test fixtures.  Data-set tests find the data through $DLKIT_DATA (.ci/run sets it to
../shared/data); without it they skip with a reason that says how to provide it."""
import os

import numpy as np
import pytest

import dlkit  # noqa: F401  (pins BLAS, checks the kernels package)


@pytest.fixture
def data_dir():
    d = os.environ.get("DLKIT_DATA")
    if not d or not os.path.isdir(d):
        pytest.skip("data set tests need DLKIT_DATA=<folder with fashion-mnist/, aclImdb.tar.gz, "
                    "tinyshakespeare/>; .ci/run points it at ../shared/data")
    return d


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
