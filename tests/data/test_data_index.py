"""The sample index: DALI's wds2idx files and a direct tar scan agree; members read back."""
import tarfile

from mamo.data.index import ShardFiles, build_index, parse_index_file, scan_tar


def test_index_file_matches_tar_scan_and_reads_members(clean_version):
    vdir, truth = clean_version
    tar = vdir / "shards" / "00000.tar"
    assert parse_index_file(tar.with_suffix(".idx")) == scan_tar(tar)
    index = build_index(vdir)
    assert len(index) == 20 and index.shard_sizes == [12, 8] and index.shard_stems == ["00000", "00001"]
    files = ShardFiles(index.shard_paths)
    with tarfile.open(vdir / "shards" / "00001.tar") as tf:
        for i in (12, 19):
            key = index.keys[i]
            assert files.read(1, int(index.image_offset[i]), int(index.image_size[i])) == \
                tf.extractfile(f"{key}.jpg").read()
            assert files.read(1, int(index.caption_offset[i]), int(index.caption_size[i])).decode() == \
                truth[key]["caption"]
    files.close()


def test_missing_index_file_falls_back_to_scanning(tmp_path):
    from shards_testdata import write_version

    vdir = tmp_path / "v"
    write_version(vdir, (4,), no_caption={2})
    (vdir / "shards" / "00000.idx").unlink()
    index = build_index(vdir)
    assert index.keys == ["k00000", "k00001", "k00002", "k00003"]
    assert index.caption_size[2] == -1 and (index.caption_size[[0, 1, 3]] > 0).all()
