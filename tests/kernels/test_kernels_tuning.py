"""The launch-config tuner: picks the fastest config once per key, skips failing ones."""
import pytest
import torch
import triton
import triton.language as tl

from kernels.tuning import LaunchConfig, launch_tuned


@triton.jit
def _scale_kernel(X, Y, N, factor, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    x = tl.load(X + offs, mask=offs < N, other=0.0)
    tl.store(Y + offs, x * factor, mask=offs < N)


def test_picks_fastest_config_once_and_skips_failures():
    x = torch.randn(37)
    y = torch.empty_like(x)
    configs = [LaunchConfig(16, 16, 4, 1), LaunchConfig(32, 16, 4, 1), LaunchConfig(64, 16, 4, 1)]
    calls = []

    def fake_bench(fn):
        fn()
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("pretend: out of shared memory")
        return {2: 3.0, 3: 1.0}[len(calls)]

    key = ("scale-test", torch.randn(1).item())  # a key no other test uses
    grid = lambda c: (triton.cdiv(37, c.block_m),)  # noqa: E731
    best = launch_tuned(_scale_kernel, grid, (x, y, 37, 2.0), {}, key, configs, bench=fake_bench)
    assert best == configs[2] and len(calls) == 3
    torch.testing.assert_close(y, 2 * x)
    y.zero_()
    again = launch_tuned(_scale_kernel, grid, (x, y, 37, 3.0), {}, key, configs, bench=fake_bench)
    assert again == best and len(calls) == 3  # cached: not measured again
    torch.testing.assert_close(y, 3 * x)


def test_every_config_failing_is_an_error():
    x = torch.randn(8)

    def failing(fn):
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError, match="no launch config"):
        launch_tuned(_scale_kernel, lambda c: (1,), (x, x, 8, 1.0), {}, ("fail-test",),
                     [LaunchConfig(16, 16, 4, 1), LaunchConfig(32, 16, 4, 1)], bench=failing)


def test_no_timing_during_cuda_graph_capture(monkeypatch):
    import kernels.tuning as tuning

    x = torch.randn(37)
    y = torch.empty_like(x)
    configs = [LaunchConfig(16, 16, 4, 1), LaunchConfig(64, 16, 4, 1)]
    key = ("capture-test", x.shape)

    def must_not_time(fn):
        raise AssertionError("timed a config during capture")

    monkeypatch.setattr(tuning, "_capturing", lambda: True)
    got = launch_tuned(_scale_kernel, lambda c: (triton.cdiv(37, c.block_m),), (x, y, 37, 2.0), {},
                       key, configs, bench=must_not_time)
    assert got == configs[0] and key not in tuning._BEST  # the next eager call still tunes
    torch.testing.assert_close(y, 2 * x)
