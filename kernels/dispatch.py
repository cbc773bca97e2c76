"""Choosing between a Triton kernel and its PyTorch reference.

``impl="auto"`` takes Triton for CUDA tensors only at shapes where it measured faster than
the reference (:func:`auto_impl`: forward + backward timed once per shape, cached with the
launch configs in kernels/tuning.py), and the reference elsewhere; ``"torch"`` always
takes the reference; ``"triton"`` insists on the kernel. On CPU tensors a Triton kernel can
only run in Triton's interpreter, which must be switched on (``TRITON_INTERPRET=1``) before
``triton`` is imported; that is how the tests exercise the kernels without a GPU.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Literal, Sequence

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


def _fresh(t: Any) -> Any:
    # a leaf of the same shape, dtype and layout: timing never touches the caller's graph
    if isinstance(t, torch.Tensor) and t.is_floating_point():
        return t.detach().clone().requires_grad_(t.requires_grad and torch.is_grad_enabled())
    return t


def fwd_bwd(fn: Callable[..., torch.Tensor], args: Sequence[Any]) -> Callable[[], None]:
    """A closure running ``fn(*args)`` on fresh copies of ``args``, and its backward when
    the inputs need gradients (what a training step pays for an op)."""
    fresh = [_fresh(a) for a in args]
    needs_grad = any(isinstance(a, torch.Tensor) and a.requires_grad for a in fresh)

    def run() -> None:
        out = fn(*fresh)
        if needs_grad:
            out.float().sum().backward()

    return run


def shape_key(op: str, *args: Any) -> tuple:
    """What an ``auto`` choice depends on: op, every tensor's shape and dtype, grad mode, device."""
    parts: list[Any] = [op, torch.is_grad_enabled()]
    for a in args:
        if isinstance(a, torch.Tensor):
            parts += [tuple(a.shape), str(a.dtype).removeprefix("torch."), a.requires_grad]
        else:
            parts.append(a)
    devices = [a.device for a in args if isinstance(a, torch.Tensor)]
    return (*parts, devices[0] if devices else "none")


def auto_impl(op: str, run: Callable[[str], Callable[..., torch.Tensor]], args: Sequence[Any],
              impls: Sequence[str] = ("torch", "triton"),
              bench: Callable[[Callable[[], Any]], float] | None = None) -> str:
    """Which of ``impls`` (the first is the reference) ``impl="auto"`` runs for ``args``:
    the one whose forward + backward measured fastest at these shapes (``run(name)`` gives
    the op under that implementation). Timed on first use, then cached in memory and on disk
    (``kernels.tuning.choose_faster``); under a ``torch.compile`` trace the recorded winner or
    the reference, since nothing can be timed there."""
    from kernels.tuning import choose_faster

    if not triton_available():
        return impls[0]
    key = shape_key(op, *args)
    if torch.compiler.is_compiling():
        _RUNNERS[op] = run
        spec = tuple(("tensor", tuple(a.shape), a.dtype, a.requires_grad) if isinstance(a, torch.Tensor)
                     else ("value", a) for a in args)
        return _constant_choice(key, tuple(impls), spec)
    return choose_faster(key, {name: fwd_bwd(run(name), args) for name in impls}, bench)


_RUNNERS: dict[str, Callable[[str], Callable[..., torch.Tensor]]] = {}


@torch._dynamo.assume_constant_result
def _constant_choice(key: tuple, impls: tuple[str, ...], spec: tuple) -> str:
    """The choice under a compile trace, run as plain Python while Dynamo traces (its result
    is a constant of the graph): the recorded winner, else, on CUDA, a timing on stand-in
    tensors of the traced shapes (real ones: no fake mode is active here), else the reference."""
    from kernels.tuning import _CHOSEN, cached_choice, choose_faster

    device, grad = key[-1], key[1]
    if key in _CHOSEN or not (isinstance(device, torch.device) and device.type == "cuda"):
        return cached_choice(key, list(impls))

    def stand_in(item: tuple) -> Any:
        if item[0] == "value":
            return item[1]
        _, shape, dtype, requires_grad = item
        if dtype.is_floating_point:
            return torch.randn(shape, dtype=dtype, device=device).requires_grad_(requires_grad and grad)
        return torch.zeros(shape, dtype=dtype, device=device)  # masks: no padding; labels: class 0

    args = [stand_in(item) for item in spec]
    with torch.set_grad_enabled(grad):
        return choose_faster(key, {name: fwd_bwd(_RUNNERS[key[0]](name), args) for name in impls})
