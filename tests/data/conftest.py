import pytest

from shards_testdata import write_concepts, write_version


@pytest.fixture(scope="session")
def clean_version(tmp_path_factory):
    """20 good samples in two shards (12 + 8) with a concept vocabulary."""
    vdir = tmp_path_factory.mktemp("data") / "clean"
    truth = write_version(vdir, (12, 8))
    write_concepts(vdir, truth)
    return vdir, truth
