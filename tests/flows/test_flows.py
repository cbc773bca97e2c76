"""The ingest flow on a real Prefect test server; serving a deployment with a cron schedule
against a real ``prefect server start``; the ``python -m flows`` CLI."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from flows.registry import get_flow
from ingest.accounting import read_failures
from ingest.synthetic import SyntheticConfig
from ingest.synthetic_version import url_table_for, write_synthetic_url_source
from ingest.verify import verify_version
from mamo.core.cli import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ingest_flow_one_task_per_chunk(prefect_harness, tmp_path):
    from prefect.artifacts import Artifact

    from flows.ingest_flow import ingest_flow
    from ingest.http_server import serve_directory

    assert get_flow("ingest") is ingest_flow
    src = write_synthetic_url_source(tmp_path / "src", SyntheticConfig(n=10, seed=2, image_size=48),
                                     progress=False)
    with serve_directory(src) as base:
        table = url_table_for(src, base)
        # one extra row whose URL is 404
        import pyarrow.parquet as pq

        t = pq.read_table(table).to_pylist() + [{"url": f"{base}/images/nope.png",
                                                 "caption": "gone", "synthetic": "{}"}]
        import pyarrow as pa

        pq.write_table(pa.Table.from_pylist(t), table)
        out = ingest_flow(overrides=[
            f"out={tmp_path / 'out'}", "dataset=web", "version=v1", "source.kind=urls",
            f"source.path={table}", "samples_per_shard=6", "download.allow_private=true",
            "download.image_size=32", "download.processes=1", "download.threads=4",
            "download.retries=0", "download.timeout=5"])
    assert out["counts"] == {"input": 11, "written": 10, "failed": 1, "filtered": 0,
                             "duplicate": 0}
    assert out["shards"] == 2
    vdir = Path(out["version_dir"])
    assert verify_version(vdir).ok
    assert [r["reason"] for r in read_failures(vdir / "failures.parquet")] == ["http_error"]
    art = Artifact.get("ingest-stats")
    assert art is not None and "| written | 10 |" in art.data and "http_error" in art.data



def _wait_healthy(url, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("prefect server exited")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("prefect server did not become healthy")


def _stop(proc, sig=signal.SIGINT, grace=20):
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_serve_deployment_with_cron_schedule(tmp_path, free_port):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api)
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
         str(port), "--analytics-off", "--no-ui"], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    served = None
    try:
        _wait_healthy(api, server, 180)
        serve_cfg = tmp_path / "serve.yaml"
        serve_cfg.write_text(yaml.safe_dump({"deployments": [{
            "flow": "ingest", "name": "ingest-nightly", "cron": "0 3 * * *",
            "config": str(REPO / "configs/ingest/synthetic.yaml"),
            "overrides": [f"out={tmp_path / 'out'}", "synthetic.n=12", "synthetic.image_size=32",
                          "samples_per_shard=5"]}]}))
        served = subprocess.Popen([sys.executable, "-m", "flows", "serve", "--config", str(serve_cfg)],
                                  env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        check = subprocess.run([sys.executable, "-c", _CHECK], env=env, cwd=REPO,
                               capture_output=True, text=True, timeout=240)
        assert check.returncode == 0, check.stdout + check.stderr
        res = json.loads(check.stdout.strip().splitlines()[-1])
        assert res["cron"] == "0 3 * * *" and res["state"] == "COMPLETED"
        m = json.loads((tmp_path / "out" / "synthetic" / "v1" / "manifest.json").read_text())
        assert m["counts"]["written"] == 12 and len(m["shards"]) == 3
    finally:
        if served is not None:
            _stop(served)
        _stop(server, signal.SIGTERM)


# runs in a child with PREFECT_API_URL set: wait for the deployment, check its schedule,
# trigger a run and wait for the served process to execute it
_CHECK = r"""
import asyncio, json, time
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

async def wait_deployment():
    async with get_client() as c:
        for _ in range(240):
            try:
                return await c.read_deployment_by_name("ingest/ingest-nightly")
            except Exception:
                await asyncio.sleep(0.5)
    raise SystemExit("deployment never registered")

d = asyncio.run(wait_deployment())
cron = d.schedules[0].schedule.cron
run = run_deployment("ingest/ingest-nightly", timeout=200)
print(json.dumps({"cron": cron, "state": run.state.type.value}))
"""


def test_flows_cli_help_and_errors():
    r = subprocess.run([sys.executable, "-m", "flows", "--help"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "serve" in r.stdout
    r = subprocess.run([sys.executable, "-m", "flows", "run", "nope"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "unknown flow" in r.stderr
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    r = subprocess.run([sys.executable, "-m", "flows", "serve", "--config",
                        str(REPO / "configs/ingest/serve.yaml")], cwd=REPO, capture_output=True,
                       text=True, env=env)
    assert r.returncode != 0 and "PREFECT_API_URL" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ingest", "--help"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "verify" in r.stdout


def test_cli_maps_arguments_onto_any_registered_flow():
    from flows.__main__ import _split_args
    from flows.serve import flow_parameters

    concepts = get_flow("concepts")
    params, overrides = _split_args(concepts, ["version_dir=data/x/v1", "vocab.min_count=2"])
    assert params == {"version_dir": "data/x/v1"} and overrides == ["vocab.min_count=2"]
    assert flow_parameters(concepts, "/c.yaml", overrides, params) == {
        "version_dir": "data/x/v1", "config_path": "/c.yaml", "overrides": ["vocab.min_count=2"]}
    with pytest.raises(UserError, match="version_dir"):
        flow_parameters(concepts, None, [], {})
    ingest = get_flow("ingest")
    params, overrides = _split_args(ingest, ["version=v2", "source.kind=synthetic"])
    assert params == {} and overrides == ["version=v2", "source.kind=synthetic"]
