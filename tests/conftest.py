import os

import pytest


def pytest_configure(config):
    """In a worker of ``pytest -n N`` (scripts/test.sh runs two), one thread for PyTorch and the
    numerical libraries: the workers share the cores, and threads that outnumber them slow every
    worker down many times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        threadpool_limits(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The simulator's tiny preset, generated once per test session (read-only for tests)."""
    from mrharmony.simulate import simulate

    return simulate(tmp_path_factory.mktemp("sim") / "tiny", preset="tiny", seed=7, quiet=True)


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory, tiny_dataset):
    """A copy of the tiny dataset with its SH features prepared."""
    import shutil

    from mrharmony.dmri.features.prepare import prepare

    root = tmp_path_factory.mktemp("prep") / "tiny"
    shutil.copytree(tiny_dataset, root)
    prepare(root, quiet=True)
    return root
