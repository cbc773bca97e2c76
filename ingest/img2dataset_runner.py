"""Runs ``img2dataset.download`` in this process (any thread), or in a child process
(``python -m ingest.img2dataset_runner PARAMS.json``) when its output should be isolated.

img2dataset's own SIGINT handler is kept out (see ``_NoSigint``). Its workers are spawned, so
they re-import the caller's main module: callers need a ``__main__`` guard.

With ``params["fetch_policy"]`` (a ``ingest.fetch.FetchPolicy`` as a dict), img2dataset's
``Downloader`` is wrapped in ``ingest.fetch.SafeDownloader`` so that every row is fetched by
``ingest.fetch`` in the workers (see that module).
"""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from mamo.core.env import apply_quiet_service_env, quiet_service_env

DISTRIBUTOR_PACKAGES = {"multiprocessing": None, "pyspark": "pyspark", "ray": "ray"}


class DistributorUnavailable(RuntimeError):
    pass


def check_distributor(name: str) -> None:
    """img2dataset with ray missing silently does nothing (see STACK.md): refuse up front."""
    pkg = DISTRIBUTOR_PACKAGES.get(name, "?")
    if pkg == "?":
        raise DistributorUnavailable(f"unknown distributor {name!r}; use one of "
                                     f"{sorted(DISTRIBUTOR_PACKAGES)}")
    if pkg is not None and find_spec(pkg) is None:
        raise DistributorUnavailable(
            f"download.distributor={name!r} needs the '{pkg}' package, which is not installed "
            f"(pip install {pkg}); the default 'multiprocessing' needs nothing")


def img2dataset_params(url_list: str | Path, output_folder: str | Path, image_size: int,
                       resize_mode: str, encode_quality: int, processes: int, threads: int,
                       retries: int, timeout: int, distributor: str, samples_per_shard: int,
                       min_image_size: int, max_image_area: float, max_aspect_ratio: float,
                       user_agent_token: str = "", extra_columns: list[str] | None = None
                       ) -> dict[str, Any]:
    """Keyword arguments of ``img2dataset.download`` for our layout (webdataset, parquet input
    with url/caption columns, sha256 of the original bytes, incremental resume)."""
    return dict(
        url_list=str(url_list), output_folder=str(output_folder), image_size=image_size,
        resize_mode=resize_mode, encode_quality=encode_quality, processes_count=processes,
        thread_count=threads, retries=retries, timeout=timeout, distributor=distributor,
        number_sample_per_shard=samples_per_shard, min_image_size=min_image_size,
        max_image_area=max_image_area, max_aspect_ratio=max_aspect_ratio,
        output_format="webdataset", input_format="parquet", url_col="url",
        caption_col="caption", save_additional_columns=list(extra_columns or ["row_id"]),
        compute_hash="sha256", incremental_mode="incremental", enable_wandb=False,
        extract_exif=False, user_agent_token=user_agent_token or None,
    )


class _NoSigint:
    """Stands in for the ``signal`` module inside ``img2dataset.main``: its SIGINT handler
    would exit(0) on Ctrl-C (turning an interrupt into success) and cannot be installed from
    a non-main thread such as a Prefect task's."""

    def __getattr__(self, name: str) -> Any:
        import signal

        return getattr(signal, name)

    @staticmethod
    def signal(signum: int, handler: Any) -> Any:
        return None


def run_in_process(params: dict[str, Any]) -> None:
    """Call ``img2dataset.download`` in this process (any thread)."""
    apply_quiet_service_env()  # before img2dataset imports albumentations (its update check)
    import img2dataset  # noqa: F401 - loads the module below

    # (the package re-exports a function named ``main``, hiding the module of that name)
    i2d_main = sys.modules["img2dataset.main"]
    i2d_main.signal = _NoSigint()  # type: ignore[assignment]
    params = dict(params)
    policy = params.pop("fetch_policy", None)
    # The true class, also when an earlier call in this process left its wrapper in place
    # (seen in the test suite): a wrapper around a stale wrapper would run the stale policy.
    original = inspect.unwrap(i2d_main.Downloader)
    if policy is not None:
        import functools

        from .fetch import FetchPolicy, SafeDownloader

        fp = FetchPolicy(**{k: tuple(v) if isinstance(v, list) else v for k, v in policy.items()})

        def build(*args: Any, **kwargs: Any) -> Any:
            return SafeDownloader(original(*args, **kwargs), fp)

        i2d_main.Downloader = functools.wraps(original)(build)  # type: ignore[assignment]
    try:
        i2d_main.download(**params)
    finally:
        i2d_main.Downloader = original


def run_img2dataset(params: dict[str, Any], log_path: str | Path | None = None,
                    in_process: bool = True) -> None:
    """Run img2dataset in this process (default), or in a child process whose output goes to
    ``log_path`` (a nonzero exit raises with the log's tail). Workers are spawned either
    way, so the calling program needs an ``if __name__ == "__main__"`` guard."""
    check_distributor(params.get("distributor", "multiprocessing"))
    out = Path(params["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    if in_process:
        run_in_process(params)
        return
    pfile = out.parent / f"{out.name}.params.json"
    pfile.write_text(json.dumps(params))
    log_path = Path(log_path) if log_path else out.parent / f"{out.name}.log"
    env = quiet_service_env()
    with open(log_path, "ab") as log:
        proc = subprocess.run([sys.executable, "-m", "ingest.img2dataset_runner", str(pfile)],
                              stdout=log, stderr=subprocess.STDOUT, env=env,
                              cwd=str(Path(__file__).resolve().parent.parent))
    if proc.returncode != 0:
        tail = Path(log_path).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"img2dataset exited with {proc.returncode}; log {log_path}:\n{tail}")


def main(argv: list[str]) -> int:
    params = json.loads(Path(argv[0]).read_text())
    if params.get("max_image_area") is None:
        params["max_image_area"] = float("inf")
    run_in_process(params)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
