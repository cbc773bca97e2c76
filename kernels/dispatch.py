"""Choosing between a Triton kernel and its PyTorch reference.

``impl="auto"`` takes Triton for CUDA tensors and the reference elsewhere; ``"torch"`` always
takes the reference; ``"triton"`` insists on the kernel. On CPU tensors a Triton kernel can
only run in Triton's interpreter, which must be switched on (``TRITON_INTERPRET=1``) before
``triton`` is imported; that is how the tests exercise the kernels without a GPU.
"""
from __future__ import annotations

import os
from typing import Literal

import torch

Impl = Literal["auto", "triton", "torch"]
IMPLS = ("auto", "triton", "torch")


def interpreter_enabled() -> bool:
    """True when Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def select_impl(impl: str, *tensors: torch.Tensor) -> Literal["triton", "torch"]:
    """Return which implementation runs for these tensors, or raise a clear error."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    on_cuda = all(t.is_cuda for t in tensors if t is not None)
    if impl == "triton" and on_cuda:
        return "triton"  # the hot path: nothing else to check (kernels/ imports triton itself)
    if impl == "torch":
        return "torch"
    if impl == "auto":
        return "triton" if on_cuda and triton_available() else "torch"
    # impl == "triton"
    if not triton_available():
        raise RuntimeError("impl='triton' needs the triton package, which is not installed")
    devices = {t.device.type for t in tensors if t is not None}
    if len(devices) > 1:
        raise RuntimeError(f"impl='triton' needs all tensors on one device, got {sorted(devices)}")
    if on_cuda:
        return "triton"
    if devices == {"cpu"} and interpreter_enabled():
        return "triton"
    raise RuntimeError(
        f"impl='triton' on {sorted(devices)} tensors: Triton kernels run on CUDA tensors, or on "
        "CPU tensors only in Triton's interpreter (set TRITON_INTERPRET=1 before triton is "
        "imported); use impl='torch' or 'auto' for the PyTorch reference"
    )


def dot_in_fp32(dtype: torch.dtype) -> bool:
    """Whether a kernel should upcast tl.dot operands to fp32.

    fp32 inputs keep full precision (IEEE dot, not TF32); in the interpreter tl.dot on bf16
    returns garbage, so everything is upcast there.
    """
    return dtype == torch.float32 or interpreter_enabled()
