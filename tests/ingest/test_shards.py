"""The one shard reader: the samples webdataset sees, errors naming the shard, reading by key."""
import io
import tarfile

import pytest

from ingest.shards import (Member, ShardReadError, ShardWriter, group_samples, iter_members,
                           iter_samples, iter_version_samples, read_members_by_key, split_name,
                           version_shards)
from ingest.synthetic import SyntheticConfig
from ingest.synthetic_version import write_synthetic_version


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_synthetic_version(root, "synthetic", "v1", SyntheticConfig(n=12, seed=0, image_size=32),
                            samples_per_shard=5, progress=False)
    return root / "synthetic" / "v1"


def test_samples_are_those_webdataset_reads(version):
    wds = pytest.importorskip("webdataset")
    tars = version_shards(version)
    assert [p.name for p in tars] == ["00000.tar", "00001.tar", "00002.tar"]
    ours = [{k: v for k, v in s.items() if k != "__shard__"} for s in iter_version_samples(version)]
    theirs = [{k: v for k, v in s.items() if k != "__url__" and k != "__local_path__"}
              for s in wds.WebDataset([str(p) for p in tars], shardshuffle=False)]
    assert len(ours) == 12 and ours == theirs
    # only the members asked for are read
    captions = list(iter_samples(tars[0], exts=("txt",)))
    assert [sorted(s) for s in captions] == [["__key__", "txt"]] * 5
    assert captions[0]["txt"] == ours[0]["txt"]


def test_read_members_by_key(version):
    samples = list(iter_version_samples(version))
    keys = [samples[1]["__key__"], samples[11]["__key__"], "nope"]
    found = read_members_by_key(version, keys, "jpg")
    assert found == {keys[0]: samples[1]["jpg"], keys[1]: samples[11]["jpg"]}


def test_grouping_follows_webdataset_rules():
    assert split_name("a.jpg") == ("a", "jpg")
    assert split_name("dir.x/a.seg.png") == ("dir.x/a", "seg.png")
    assert split_name("dir/.hidden") == ("dir/.hidden", "") and split_name("noext") == ("noext", "")

    def m(name):
        key, ext = split_name(name)
        return Member(name, key, ext, 0, 1, True, b"x")

    got = list(group_samples(m(n) for n in ("a.jpg", "a.txt", "README", "b.jpg", "a.json")))
    assert [s["__key__"] for s in got] == ["a", "b", "a"]  # a key seen again starts a new sample
    assert sorted(got[0]) == ["__key__", "jpg", "txt"]


def test_truncated_or_foreign_tar_names_the_shard(tmp_path):
    writer = ShardWriter(tmp_path, 0)
    writer.add("k0", b"\xff\xd8\xff" + b"0" * 3000, "a caption", {"key": "k0"})
    info = writer.close()
    tar = tmp_path / info.tar
    assert not [p for p in (tmp_path / "shards").iterdir() if p.name.startswith(".")]  # no temp left
    data = tar.read_bytes()
    tar.write_bytes(data[:1500])
    with pytest.raises(ShardReadError, match="00000.tar: unreadable tar") as e:
        list(iter_members(tar))
    assert e.value.path == tar
    tar.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ShardReadError, match="00000.tar"):
        list(iter_samples(tar))
    with pytest.raises(FileNotFoundError):
        list(iter_samples(tmp_path / "missing.tar"))


def test_non_regular_members_only_when_asked(tmp_path):
    tar = tmp_path / "x.tar"
    with tarfile.open(tar, "w") as tf:
        d = tarfile.TarInfo("sub")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        f = tarfile.TarInfo("k.txt")
        f.size = 2
        tf.addfile(f, io.BytesIO(b"hi"))
    assert [m.name for m in iter_members(tar)] == ["k.txt"]
    every = list(iter_members(tar, regular_only=False, read=False))
    assert [(m.name, m.regular, m.data) for m in every] == [("sub", False, None), ("k.txt", True, None)]


def test_aborted_writer_leaves_nothing(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / ".00003.tar.tmp-999999").write_bytes(b"left by a killed writer")
    writer = ShardWriter(tmp_path, 3)
    writer.add("k0", b"jpg", "caption", {})
    writer.abort()
    assert list((tmp_path / "shards").iterdir()) == []


def test_the_writers_index_is_the_one_read_back_from_the_tar(tmp_path):
    """ShardWriter indexes as it writes (no second read of the shard); long names and non-ASCII
    names (PAX headers) and sizes on and off the 512-byte blocks included."""
    from ingest.shards import index_text

    w = ShardWriter(tmp_path, 0)
    for i, size in enumerate([0, 1, 511, 512, 513, 3000]):
        key = f"k{i:03d}" + ("_" + "a" * 120 if i == 4 else "")  # > 100 chars: a PAX header
        w.add(key, b"\xff" * size, "caption é" * i, {"i": i, "name": "x" * (200 * i)})
    info = w.close()
    tar = tmp_path / info.tar
    assert (tmp_path / info.index).read_text() == index_text(tar)  # the tar's own members
    for m in iter_members(tar):  # and each recorded offset holds the member's bytes
        assert tar.read_bytes()[m.offset:m.offset + m.size] == m.data
