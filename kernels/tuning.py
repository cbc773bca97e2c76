"""A minimal launch-config tuner: benchmark a few configs once per shape key, then launch
the winner directly; and the same once-per-shape timing for ``impl="auto"``, which takes a
Triton kernel only where it measured faster than PyTorch (:func:`choose_faster`).

Why not ``triton.autotune``: it cannot run in the interpreter with more than one config, and
on the H200 the whole attention fwd+bwd at MAMO shapes is short enough (~1 ms) that launch
overhead shows; a dict lookup plus a plain JIT launch keeps the host side small.

Winners (configs and implementations) are also kept on disk (``$MAMO_TUNING_CACHE``, default
``~/.cache/mamo/kernel_tuning.json``; ``off`` disables it), keyed by GPU model, Triton version,
shape key and config (or implementation) list: a restarted or resumed run, and every rank of a job, launches the
same configs as the first run did (same numerics, no re-timing).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from mamo.core.files import write_json


class LaunchConfig(NamedTuple):
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


_BEST: dict[tuple, LaunchConfig] = {}
# Set by recording_launches(): launches are appended here instead of run.
_RECORDED: list[dict[str, Any]] | None = None


@contextlib.contextmanager
def recording_launches() -> Iterator[list[dict[str, Any]]]:
    """Within this block kernels are not launched: each launch is recorded as a dict
    (kernel, args, kwargs, configs), for compiling them ahead of time (kernels/compile_check.py)."""
    global _RECORDED
    previous, _RECORDED = _RECORDED, []
    try:
        yield _RECORDED
    finally:
        _RECORDED = previous


def launch(kernel: Any, grid: tuple[int, ...], args: tuple, kwargs: dict[str, Any]) -> None:
    """A plain launch (fixed config in ``kwargs``), recorded under ``recording_launches``."""
    if _RECORDED is not None:
        _RECORDED.append({"kernel": kernel, "args": args, "kwargs": kwargs, "configs": None})
        return
    kernel[grid](*args, **kwargs)


def _cuda_bench(fn: Callable[[], Any]) -> float:
    import triton.testing

    # median over ~50 ms of launches: MAMO-size kernels run for 0.05-0.3 ms, and a shorter
    # window let noise pick a slower config (H200 run, B64 S237 forward).
    return float(triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median"))


_DISK: dict[str, Any] | None = None  # the disk cache, loaded on first need


def _cache_file() -> Path | None:
    value = os.environ.get("MAMO_TUNING_CACHE", "")
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value) if value else Path.home() / ".cache" / "mamo" / "kernel_tuning.json"


def _disk_key(key: tuple, configs: list[LaunchConfig] | list[str]) -> str:
    import torch
    import triton

    def part(x: Any) -> str:
        if isinstance(x, torch.device):
            # the GPU model, not its index: every rank of a node shares the entry
            return torch.cuda.get_device_name(x) if x.type == "cuda" else x.type
        return str(x)

    variants = [c if isinstance(c, str) else tuple(c) for c in configs]
    return "|".join([triton.__version__, *map(part, key), repr(variants)])


def _read_cache(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _disk_get(key: tuple, configs: list[LaunchConfig] | list[str]) -> Any:
    global _DISK
    path = _cache_file()
    if path is None:
        return None
    if _DISK is None:
        try:
            _DISK = _read_cache(path)
        except (OSError, ValueError) as e:
            warnings.warn(f"kernel tuning cache {path} unreadable ({e}); re-tuning", stacklevel=3)
            _DISK = {}
    return _DISK.get(_disk_key(key, configs))


def _disk_lookup(key: tuple, configs: list[LaunchConfig]) -> LaunchConfig | None:
    hit = _disk_get(key, configs)
    return LaunchConfig(*hit) if isinstance(hit, list) and LaunchConfig(*hit) in configs else None


def _disk_store(key: tuple, configs: list[LaunchConfig] | list[str], best: LaunchConfig | str) -> None:
    global _DISK
    path = _cache_file()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # other processes' entries; an unreadable file is replaced
            current = _read_cache(path)
        except ValueError:
            current = {}
        current.update(_DISK or {})
        current[_disk_key(key, configs)] = best if isinstance(best, str) else list(best)
        # the foundation's temp name carries the pid: the ranks of a job may write at once
        write_json(path, current, indent=0, sort_keys=True)
        _DISK = current
    except (OSError, ValueError) as e:
        warnings.warn(f"kernel tuning cache {path} not written ({e})", stacklevel=3)


def _capturing() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def launch_tuned(kernel: Any, grid: Callable[[LaunchConfig], tuple[int, ...]], args: tuple,
                 kwargs: dict[str, Any], key: tuple, configs: list[LaunchConfig],
                 bench: Callable[[Callable[[], Any]], float] | None = None) -> LaunchConfig:
    """Launch ``kernel`` with the fastest of ``configs`` for ``key`` (measured on first use).

    The kernel must be idempotent (it fully rewrites its outputs): the timing runs launch it
    for real. Configs that fail to compile (too much shared memory) are skipped.
    """

    def run(cfg: LaunchConfig) -> None:
        kernel[grid(cfg)](*args, **kwargs, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                          num_warps=cfg.num_warps, num_stages=cfg.num_stages)

    if _RECORDED is not None:
        _RECORDED.append({"kernel": kernel, "args": args, "kwargs": kwargs, "configs": configs})
        return configs[0]
    best = _BEST.get(key)
    if best is None:
        if len(configs) == 1:
            best = configs[0]
        elif (cached := _disk_lookup(key, configs)) is not None:
            best = cached
        elif _capturing():
            # Timing inside a CUDA graph capture would break it (it synchronises): take the
            # first config and do not cache it, so the next eager call still tunes.
            run(configs[0])
            return configs[0]
        else:
            timer = bench or _cuda_bench
            times = []
            errors = []
            for cfg in configs:
                try:
                    times.append(timer(lambda cfg=cfg: run(cfg)))
                except Exception as e:  # noqa: BLE001 - e.g. OutOfResources for this config
                    times.append(math.inf)
                    errors.append(f"{cfg}: {e!r}")
            if all(math.isinf(t) for t in times):
                raise RuntimeError("no launch config works for " + repr(key) + ": " + "; ".join(errors))
            best = configs[min(range(len(configs)), key=times.__getitem__)]
            _disk_store(key, configs, best)
        _BEST[key] = best
    run(best)
    return best


# ----------------------------------------------------------------------------- impl="auto"
_CHOSEN: dict[tuple, str] = {}


def choose_faster(key: tuple, candidates: dict[str, Callable[[], Any]],
                  bench: Callable[[Callable[[], Any]], float] | None = None) -> str:
    """The name of the fastest of ``candidates`` (closures running one implementation at the
    shapes of ``key``), timed once per key and cached in memory and on disk as launch configs
    are. The first candidate is the safe default: it is taken without timing inside a CUDA
    graph capture, when a candidate fails, and on ties.

    ``bench(fn) -> ms`` replaces the CUDA timer (tests inject timings through it).
    """
    from torch.utils._python_dispatch import _disable_current_modes

    names = list(candidates)
    if (hit := _CHOSEN.get(key)) is not None:
        return hit
    cached = _disk_get(key, names)
    if isinstance(cached, str) and cached in names:
        _CHOSEN[key] = cached
        return cached
    if _capturing():
        return names[0]
    timer = bench or _cuda_bench
    times = []
    # Timing runs are not part of the step: hide them from FlopCounterMode and other modes.
    with _disable_current_modes():
        for name in names:
            try:
                times.append(timer(candidates[name]))
            except Exception as e:  # noqa: BLE001 - e.g. a kernel that does not fit this GPU
                warnings.warn(f"impl=auto: {name} failed at {key!r} ({e!r}); not chosen", stacklevel=2)
                times.append(math.inf)
    best = names[min(range(len(names)), key=times.__getitem__)]  # ties: the first (safe) one
    _CHOSEN[key] = best
    _disk_store(key, names, best)
    return best


def cached_choice(key: tuple, names: list[str]) -> str:
    """The winner recorded for ``key`` (memory, then disk), else the first name; never times
    (what a ``torch.compile`` trace uses: it cannot run the candidates)."""
    if (hit := _CHOSEN.get(key)) is not None:
        return hit
    cached = _disk_get(key, names)
    return cached if isinstance(cached, str) and cached in names else names[0]
