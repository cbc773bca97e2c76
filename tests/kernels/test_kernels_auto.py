"""``impl="auto"`` never picks a loser: the choice between Triton and PyTorch per shape, with
the timings injected through ``bench`` (the candidates still run, in the interpreter) or read
back from the tuning cache file; and FLOPs that do not depend on which attention ran."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from kernels import tuning
from kernels.attention import fused_attention
from kernels.dispatch import auto_impl
from kernels.regression import masked_regression_loss
from mamo.model.attention import attention, auto_attention_impl


def _timings(ms_by_order: list[float], ran: list[int]):
    """A bench that runs each candidate once (so that it must work) and returns its given time."""

    def bench(fn):
        fn()
        ran.append(len(ran))
        return ms_by_order[len(ran) - 1]

    return bench


@pytest.fixture
def cache_file(tmp_path, monkeypatch):
    path = tmp_path / "kernel_tuning.json"
    monkeypatch.setenv("MAMO_TUNING_CACHE", str(path))
    monkeypatch.setattr(tuning, "_DISK", None)  # forget the session's cache: read this file
    monkeypatch.setattr(tuning, "_CHOSEN", {})
    return path


def _qkv(b=2, h=2, s=19, d=16, grad=True):
    q, k, v = (torch.randn(b, h, s, d, requires_grad=grad) for _ in range(3))
    mask = torch.zeros(b, s, dtype=torch.bool)
    mask[1, 11:] = True
    return q, k, v, mask


@pytest.mark.parametrize("sdpa_ms, triton_ms, expected", [(1.0, 2.0, "sdpa"), (2.0, 1.0, "triton"),
                                                          (1.0, 1.0, "sdpa")])
def test_attention_auto_takes_triton_only_where_it_measured_faster(cache_file, sdpa_ms, triton_ms, expected):
    q, k, v, mask = _qkv()
    ran: list[int] = []
    assert auto_attention_impl(q, k, v, mask, bench=_timings([sdpa_ms, triton_ms], ran)) == expected
    assert len(ran) == 2  # both ran: SDPA and the kernel in the interpreter
    assert q.grad is None  # timing used copies, not the caller's tensors
    # cached: the same shape is not timed again, in this process ...
    assert auto_attention_impl(q, k, v, mask, bench=_timings([], ran)) == expected
    # ... nor in the next one, which reads the tuning cache file
    assert expected in json.loads(cache_file.read_text()).values()
    tuning._CHOSEN.clear()
    tuning._DISK = None
    assert auto_attention_impl(q, k, v, mask, bench=_timings([], ran)) == expected
    assert len(ran) == 2


def test_choice_is_per_shape_and_grad_mode(cache_file):
    q, k, v, mask = _qkv()
    ran: list[int] = []
    assert auto_attention_impl(q, k, v, mask, bench=_timings([2.0, 1.0], ran)) == "triton"
    q2, k2, v2, mask2 = _qkv(s=40)
    assert auto_attention_impl(q2, k2, v2, mask2, bench=_timings([2.0, 1.0, 1.0, 3.0], ran)) == "sdpa"
    with torch.no_grad():  # the teacher's forward-only calls are their own case
        assert auto_attention_impl(q, k, v, mask, bench=_timings([2.0, 1.0, 1.0, 3.0, 1.0, 3.0], ran)) == "sdpa"
    assert len(ran) == 6


def test_a_failing_candidate_is_never_chosen(cache_file):
    def bench(fn):
        fn()
        return 1.0

    def run(name):
        def op(x):
            if name == "triton":
                raise RuntimeError("pretend: no config fits this GPU")
            return x * 2
        return op

    with pytest.warns(UserWarning, match="triton failed"):
        assert auto_impl("toy-op", run, (torch.randn(4, requires_grad=True),), bench=bench) == "torch"


def test_recorded_winner_in_the_cache_file_is_used_without_timing(cache_file):
    pred, target = torch.randn(10, 8, requires_grad=True), torch.randn(10, 8)
    mask = torch.rand(10) > 0.5
    ran: list[int] = []
    op = "masked_regression:smooth_l1:1.0:layer"
    run = lambda name: lambda p, t, m: masked_regression_loss(p, t, m, impl=name)  # noqa: E731
    assert auto_impl(op, run, (pred, target, mask), bench=_timings([1.0, 5.0], ran)) == "torch"
    # Another process recorded that Triton won at this shape on this machine: it is believed.
    entries = json.loads(cache_file.read_text())
    cache_file.write_text(json.dumps({key: "triton" for key in entries}))
    tuning._CHOSEN.clear()
    tuning._DISK = None
    assert auto_impl(op, run, (pred, target, mask), bench=_timings([], ran)) == "triton"
    assert len(ran) == 2


def test_auto_on_cpu_is_sdpa_without_timing():
    q, k, v, mask = _qkv()
    out = attention(q, k, v, mask, impl="auto")
    torch.testing.assert_close(out, attention(q, k, v, mask, impl="sdpa"))


def test_compiled_auto_choice_has_no_graph_break(cache_file):
    """Under a compile trace nothing can be timed: the recorded winner (here none: SDPA)."""
    q, k, v, mask = _qkv(grad=False)
    run = lambda name: lambda q, k, v, m: attention(q, k, v, m, impl=name)  # noqa: E731

    def f(q, k, v, m):
        return attention(q, k, v, m, impl=auto_impl("attention", run, (q, k, v, m), impls=("sdpa", "triton")))

    explained = torch._dynamo.explain(f)(q, k, v, mask)
    assert explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.parametrize("sdpa_ms, triton_ms, op_in_graph", [(2.0, 1.0, "mamo_kernels.attention_fwd"),
                                                              (1.0, 2.0, "scaled_dot_product_attention")])
def test_a_compiled_graph_uses_the_recorded_winner(cache_file, sdpa_ms, triton_ms, op_in_graph):
    q, k, v, mask = _qkv(grad=False, s=23)
    ran: list[int] = []
    auto_attention_impl(q, k, v, mask, bench=_timings([sdpa_ms, triton_ms], ran))  # the eager first use
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    # the model only asks on CUDA tensors; here the same choice is asked under a trace directly
    run = lambda name: lambda q, k, v, m: attention(q, k, v, m, impl=name)  # noqa: E731

    def f(q, k, v, m):
        return attention(q, k, v, m, impl=auto_impl("attention:None", run, (q, k, v, m), impls=("sdpa", "triton")))

    torch.compile(f, backend=backend, fullgraph=True)(q, k, v, mask)
    assert op_in_graph in "\n".join(gm.code for gm in graphs)


def test_triton_attention_counts_sdpa_flops(seed):
    q, k, v, mask = _qkv(s=37, d=32)
    with FlopCounterMode(display=False) as fused:
        fused_attention(q, k, v, mask, impl="triton").sum().backward()
    from mamo.trainer.metrics import _count_cpu_attention

    _count_cpu_attention()  # what the trainer registers before counting a CPU step
    with FlopCounterMode(display=False) as ref:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    b, h, s, d = q.shape
    assert fused.get_total_flops() == ref.get_total_flops() == math.prod((b, h, s, s, d)) * 4 * 3.5
