"""A URL ingest killed with SIGKILL and restarted completes without re-downloading finished
chunks and yields the full, correct sample set; a new table makes a new version."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from ingest.config import IngestConfig
from ingest.http_server import RequestLog, serve_directory
from ingest.manifest import load_manifest
from ingest.pipeline import run_ingest
from ingest.shards import read_shard
from ingest.synthetic import SyntheticConfig
from ingest.synthetic_version import url_table_for, write_synthetic_url_source
from ingest.verify import verify_version
from ingest.version import VersionExistsError
from mamo.core.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    src = write_synthetic_url_source(tmp_path / "src", SyntheticConfig(n=60, seed=4, image_size=64),
                                     progress=False)
    requests = RequestLog(delay=0.1)  # slow enough that a download is in flight when the process is killed

    with serve_directory(src, on_request=requests) as base:
        table = url_table_for(src, base)
        conf = {"out": str(tmp_path / "out"), "dataset": "web", "version": "v1",
                "samples_per_shard": 10, "progress": False,
                "source": {"kind": "urls", "path": str(table), "extra_cols": ["synthetic"],
                           "json_cols": ["synthetic"]},
                "download": {"allow_private": True, "image_size": 48, "processes": 1,
                             "threads": 2, "retries": 0, "timeout": 5}}
        cfg_path = tmp_path / "ingest.yaml"
        cfg_path.write_text(yaml.safe_dump(conf))
        vdir = tmp_path / "out" / "web" / "v1"
        dl = vdir / "_work" / "dl" / "all"
        proc = subprocess.Popen([sys.executable, "-m", "ingest", "run", "--config", str(cfg_path)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if list(dl.glob("*_stats.json")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "ingest finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, img2dataset and its workers
        proc.wait()
        assert not (vdir / "manifest.json").exists()
        done = sorted(int(p.name[:5]) for p in dl.glob("*_stats.json"))
        assert done and len(done) < 6
        done_paths = set()
        for c in done:
            for u in pq.read_table(vdir / "_work" / "chunks_in" / f"{c:05d}.parquet").column("url").to_pylist():
                done_paths.add(u[len(base):])
        requests.clear()
        m = run_ingest(load_config(IngestConfig, cfg_path))
        # images only: the rerun may read robots.txt again, which is not a redone download
        again = {p for p in requests if p.startswith("/images/")}
    assert not (again & done_paths), "finished chunks were downloaded again"
    all_paths = {u[len(base):] for u in pq.read_table(table).column("url").to_pylist()}
    assert again == all_paths - done_paths, (sorted(again - (all_paths - done_paths)),
                                             sorted((all_paths - done_paths) - again))
    assert m["counts"] == {"input": 60, "written": 60, "failed": 0, "filtered": 0, "duplicate": 0}
    samples = [s for sh in m["shards"] for s in read_shard(vdir / sh["tar"])]
    assert sorted(s["key"] for s in samples) == [f"r{i:09d}" for i in range(60)]
    for s in samples:  # each sample holds the image its URL served
        i = int(s["key"][1:])
        served = (src / "images" / f"syn4_{i:08d}.png").read_bytes()
        assert s["json"]["source_sha256"] == hashlib.sha256(served).hexdigest()
        assert s["json"]["synthetic"]["index"] == i
    assert verify_version(vdir).ok

    # the complete version is immutable; a new table goes to a new version
    with pytest.raises(VersionExistsError):
        run_ingest(load_config(IngestConfig, cfg_path))
    before = {p.name: p.stat().st_mtime_ns for p in (vdir / "shards").iterdir()}
    table2 = tmp_path / "urls2.jsonl"
    table2.write_text(json.dumps({"url": "ftp://x/y.png", "caption": "new"}) + "\n")
    m2 = run_ingest(load_config(IngestConfig, cfg_path, ["version=v2", f"source.path={table2}",
                                                         "source.extra_cols=[]",
                                                         "source.json_cols=[]"]))
    assert m2["counts"]["input"] == 1 and load_manifest(vdir)["counts"]["written"] == 60
    assert {p.name: p.stat().st_mtime_ns for p in (vdir / "shards").iterdir()} == before
