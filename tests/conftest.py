import pytest


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
