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


def test_winner_is_kept_on_disk_for_the_next_process(monkeypatch, tmp_path):
    import json

    import kernels.tuning as tuning

    cache = tmp_path / "tuning.json"
    monkeypatch.setenv("MAMO_TUNING_CACHE", str(cache))
    monkeypatch.setattr(tuning, "_DISK", None)
    x = torch.randn(37)
    y = torch.empty_like(x)
    configs = [LaunchConfig(16, 16, 4, 1), LaunchConfig(64, 16, 4, 1)]
    key = ("disk-test", x.device, x.dtype, 37)
    grid = lambda c: (triton.cdiv(37, c.block_m),)  # noqa: E731
    timings = iter([2.0, 1.0])
    best = launch_tuned(_scale_kernel, grid, (x, y, 37, 2.0), {}, key, configs,
                        bench=lambda fn: (fn(), next(timings))[1])
    assert best == configs[1]
    stored = json.loads(cache.read_text())
    assert list(stored.values()) == [[64, 16, 4, 1]] and "disk-test" in next(iter(stored))

    # a new process: empty in-memory caches; the disk entry is used, nothing is timed
    monkeypatch.setattr(tuning, "_BEST", {})
    monkeypatch.setattr(tuning, "_DISK", None)

    def must_not_time(fn):
        raise AssertionError("re-timed a config that is on disk")

    y.zero_()
    again = launch_tuned(_scale_kernel, grid, (x, y, 37, 3.0), {}, key, configs, bench=must_not_time)
    assert again == configs[1]
    torch.testing.assert_close(y, 3 * x)
    # a different config list is a different question: tuned afresh
    other = configs + [LaunchConfig(32, 16, 4, 1)]
    monkeypatch.setattr(tuning, "_BEST", {})
    timings = iter([3.0, 2.0, 1.0])
    assert launch_tuned(_scale_kernel, grid, (x, y, 37, 1.0), {}, key, other,
                        bench=lambda fn: (fn(), next(timings))[1]) == other[2]
    assert len(json.loads(cache.read_text())) == 2


def test_unreadable_cache_warns_and_retunes(monkeypatch, tmp_path):
    import kernels.tuning as tuning

    cache = tmp_path / "tuning.json"
    cache.write_text("{not json")
    monkeypatch.setenv("MAMO_TUNING_CACHE", str(cache))
    monkeypatch.setattr(tuning, "_DISK", None)
    x = torch.randn(8)
    y = torch.empty_like(x)
    configs = [LaunchConfig(16, 16, 4, 1), LaunchConfig(64, 16, 4, 1)]
    timings = iter([1.0, 2.0])
    with pytest.warns(UserWarning, match="unreadable"):
        best = launch_tuned(_scale_kernel, lambda c: (1,), (x, y, 8, 1.0), {}, ("bad-cache",), configs,
                            bench=lambda fn: (fn(), next(timings))[1])
    assert best == configs[0]
    assert "bad-cache" in cache.read_text()  # replaced by a readable file
