"""An img2dataset worker process killed with SIGKILL mid-chunk (a real ``python -m ingest run``,
a real slow loopback server). img2dataset's multiprocessing pool loses that chunk's task, so
the run stalls instead of ending: the user stops it (SIGTERM: exit 143, one line, no traceback), and the
next run downloads again only the chunks without img2dataset's stats file, the killed one
among them, and ends with every row accounted once."""
import os
import signal
import subprocess
import time

import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from pipeline_faults import PY, REPO, cli, env, wait_for

from ingest.http_server import RequestLog, serve_directory
from ingest.manifest import load_manifest
from ingest.synthetic import SyntheticConfig
from ingest.synthetic_version import url_table_for, write_synthetic_url_source
from ingest.verify import verify_version

pytestmark = pytest.mark.slow


def _worker(proc: subprocess.Popen) -> psutil.Process | None:
    """The img2dataset pool worker among the CLI's children (not the resource tracker)."""
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmd:
            return child
    return None


def test_worker_killed_mid_chunk_is_redone_on_the_next_run(tmp_path):
    src = write_synthetic_url_source(tmp_path / "src", SyntheticConfig(n=40, seed=6, image_size=40),
                                     progress=False)
    requests = RequestLog(delay=0.1)  # slow enough that a download is in flight when the process is killed

    with serve_directory(src, on_request=requests) as base:
        table = url_table_for(src, base)
        cfg = tmp_path / "ingest.yaml"
        cfg.write_text(yaml.safe_dump({
            "out": str(tmp_path / "out"), "dataset": "web", "version": "v1",
            "samples_per_shard": 10, "progress": False,
            "source": {"kind": "urls", "path": str(table)},
            "download": {"allow_private": True, "image_size": 32, "processes": 1, "threads": 2,
                         "retries": 0, "timeout": 5}}))
        vdir = tmp_path / "out" / "web" / "v1"
        dl = vdir / "_work" / "dl" / "all"
        proc = subprocess.Popen([PY, "-m", "ingest", "run", "--config", str(cfg)], cwd=REPO,
                                env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            wait_for(lambda: len(list(dl.glob("*_stats.json"))) >= 1 and _worker(proc), proc,
                     "one finished chunk")
            done = {p.name[:5] for p in dl.glob("*_stats.json")}
            n_before = len(requests)
            wait_for(lambda: len(requests) > n_before, proc, "a request of the next chunk")
            _worker(proc).send_signal(signal.SIGKILL)  # mid-chunk
            time.sleep(1.0)  # let the pool notice (it starts a new worker; the task is lost)
            proc.send_signal(signal.SIGTERM)  # the user stops the stalled run
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 143, err
        assert "error: stopped by SIGTERM; rerun the same command to resume" in err, err
        assert "Traceback" not in err, err
        assert not (vdir / "manifest.json").exists()
        done = {p.name[:5] for p in dl.glob("*_stats.json")}
        assert len(done) < 4, "the ingest finished although its worker was killed"
        finished_urls = {u[len(base):] for c in sorted(done) for u in
                         pq.read_table(vdir / "_work" / "chunks_in" / f"{c}.parquet")
                         .column("url").to_pylist()}
        requests.clear()
        again = cli("ingest", "run", "--config", str(cfg))
        assert again.returncode == 0, again.stderr
        refetched = set(requests)
    assert not (refetched & finished_urls), "a finished chunk was downloaded again"
    assert len(refetched) == 40 - len(finished_urls)  # the killed chunk and the rest, once
    m = load_manifest(vdir)
    assert m["counts"] == {"input": 40, "written": 40, "failed": 0, "filtered": 0, "duplicate": 0}
    assert verify_version(vdir).ok
