"""Per-step metrics: ``metrics.jsonl`` (one JSON object per optimizer step) and, optionally,
TensorBoard events. Only rank 0 writes.

On resume the file is cut back to the checkpoint's step first, so that steps logged after the
last checkpoint by the killed run are not duplicated: the file always reads as one run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mamo.core.files import write_text
from mamo.run_dir import RunDir


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: write them as strings so the file stays valid JSON Lines.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def truncate_after(path: str | Path, step: int) -> None:
    """Keep only records with ``step <= step`` (atomic rewrite; unreadable tail lines dropped)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by SIGKILL
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a metrics file (for tests, reports and the benchmark)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class MetricsLogger:
    """Appends one record per step to the run's ``metrics.jsonl`` (``enabled``: rank 0 only)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = False):
        self.enabled = enabled
        self.path = RunDir(run_dir).metrics
        self._file = open(self.path, "a", encoding="utf-8") if enabled else None
        self._tb = None
        if enabled and tensorboard:
            try:  # optional dependency, imported only when asked for
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("train.tensorboard=true needs the `tensorboard` package (pip install tensorboard)") from e
            self._tb = SummaryWriter(log_dir=str(RunDir(run_dir).tensorboard))

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"step": step, **{k: _clean(v) for k, v in values.items()}}
        assert self._file is not None
        self._file.write(json.dumps(rec) + "\n")
        # Flush every step: a killed run keeps everything it logged.
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


# ----------------------------------------------------------------------------- FLOPs and MFU

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's datasheets (they
# print the sparse figure; dense is half): A100 SXM4/PCIe 312 T (A100 datasheet, "BFLOAT16
# Tensor Core 312 | 624* TFLOPS"); H100 SXM 989 T, PCIe 756 T, NVL 835 T (H100 datasheet,
# 1,979* / 1,513* / 1,671*); H200 SXM 989 T, NVL 835 T (H200 datasheet, 1,979* / 1,671*).
# Matched against torch.cuda.get_device_name() in order: the first substring that fits.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.5e12),
    ("H200", 989.4e12),
    ("H100 NVL", 835.5e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),
    ("A100", 312.0e12),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named ``device_name`` (FLOP/s), None when not in the table."""
    return next((peak for part, peak in PEAK_BF16_FLOPS if part in device_name), None)


def _count_cpu_attention() -> None:
    """Give the CPU's fused SDPA kernels SDPA's FLOP formulas (torch has them for the CUDA
    kernels only, so a CPU step would count its attention as 0)."""
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd not in fc.flop_registry:
        fc.register_flop_formula(fwd)(lambda q, k, v, *a, **kw: fc.sdpa_flop_count(q, k, v))
    if bwd is not None and bwd not in fc.flop_registry:
        fc.register_flop_formula(bwd)(lambda do, q, k, v, *a, **kw: fc.sdpa_backward_flop_count(do, q, k, v))


class StepFlops:
    """The FLOPs of one optimizer step, counted on the first step this process runs.

    torch's ``FlopCounterMode`` counts the matmuls/convolutions/attention that the step really
    dispatches (forward, teacher, backward; the Triton attention through its custom op, which
    carries SDPA's formula), on this rank; times the world size, it is the step's global count.
    Counting once suffices when the shapes are fixed (``data.pad_to_max_len=true``); with
    per-batch padding later steps differ by their text lengths.

    The counted step runs eagerly (``torch.compiler.set_stance("force_eager")``): Dynamo does
    not trace a frame under a dispatch mode such as ``FlopCounterMode``, and marks the code it
    skipped so that it is never compiled afterwards either; with the counter alone the compiled
    blocks or step (``train.compile``) would run eagerly for the whole run. The eager step's
    count is the model's FLOPs, compiled or not.
    """

    def __init__(self, world_size: int, device_name: str | None):
        self.world_size = world_size
        self.peak = peak_bf16_flops(device_name) if device_name else None
        self.per_step: int | None = None
        self._counter: Any = None

    def counting(self) -> Any:
        """Context for the step's micro-batches: counts on the first step, nothing after."""
        import contextlib

        if self.per_step is not None:
            return contextlib.nullcontext()
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        _count_cpu_attention()
        self._counter = FlopCounterMode(display=False)
        context = contextlib.ExitStack()
        context.enter_context(torch.compiler.set_stance("force_eager"))  # compiled from step 2 on
        context.enter_context(self._counter)
        return context

    def fields(self, step_time_s: float) -> dict[str, float]:
        """``flops`` (global, per optimizer step) and, with a known peak, ``mfu``."""
        if self._counter is not None:  # the first step just ended
            self.per_step = int(self._counter.get_total_flops()) * self.world_size
            self._counter = None
        if self.per_step is None:
            return {}
        out: dict[str, float] = {"flops": float(self.per_step)}
        if self.peak:
            out["mfu"] = self.per_step / max(step_time_s, 1e-9) / (self.peak * self.world_size)
        return out
