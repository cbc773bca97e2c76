import pytest

from mamo.data import DataConfig
from shards_testdata import write_concepts, write_version


@pytest.fixture(scope="session")
def clean_version(tmp_path_factory):
    """20 good samples in two shards (12 + 8) with a concept vocabulary."""
    vdir = tmp_path_factory.mktemp("data") / "clean"
    truth = write_version(vdir, (12, 8))
    write_concepts(vdir, truth)
    return vdir, truth


def tiny_cfg(vdir, **kw) -> DataConfig:
    base = dict(version_dir=vdir, image_size=32, batch_size=4, max_text_len=16, num_threads=1,
                num_workers=0, backend="dali", decode="cpu", seed=3, shuffle_buffer=6)
    base.update(kw)
    return DataConfig(**base)
