"""FLOPs and MFU of a training step: torch's FlopCounterMode on the first step, checked
against the analytic count of a model whose FLOPs are known, and the peak table."""
import pytest
import torch
from torch import nn

from mamo.trainer.metrics import StepFlops, peak_bf16_flops


def test_first_step_is_counted_exactly_and_reused():
    n, d_in, d_out = 8, 32, 16
    model = nn.Linear(d_in, d_out)
    flops = StepFlops(world_size=2, device_name="NVIDIA H200")
    x = torch.randn(n, d_in, requires_grad=True)
    with flops.counting():
        model(x).sum().backward()
    got = flops.fields(step_time_s=0.5)
    # forward 2nkm, backward 2 x that (grad of the input and of the weight); two ranks
    expected = 2 * (3 * 2 * n * d_in * d_out)
    assert got["flops"] == expected
    assert got["mfu"] == pytest.approx(expected / 0.5 / (989.4e12 * 2))
    # later steps are not counted again (the counting context is a no-op)
    with flops.counting():
        model(torch.randn(2 * n, d_in)).sum().backward()
    assert flops.fields(step_time_s=1.0)["flops"] == expected


def test_no_mfu_where_the_peak_is_unknown():
    flops = StepFlops(world_size=1, device_name=None)  # the CPU
    with flops.counting():
        nn.Linear(4, 4)(torch.randn(2, 4)).sum().backward()
    assert set(flops.fields(1.0)) == {"flops"}


@pytest.mark.parametrize("name, peak", [("NVIDIA H200", 989.4e12), ("NVIDIA H100 80GB HBM3", 989.4e12),
                                        ("NVIDIA H100 PCIe", 756e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                        ("NVIDIA H200 NVL", 835.5e12), ("NVIDIA GeForce RTX 4090", None)])
def test_peak_table(name, peak):
    assert peak_bf16_flops(name) == peak


class Affine(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_a_compiled_model_counted_on_its_first_step_compiles_afterwards():
    """Dynamo skips a frame first met under FlopCounterMode and never compiles it later: the
    counted step runs eagerly, so that ``train.compile`` takes effect from the second step."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = Affine(4, 4)  # nn.Linear itself: a torch file, which Dynamo does not trace at the top
    model.compile(backend="eager")
    flops = StepFlops(world_size=1, device_name=None)
    with flops.counting():
        model(torch.randn(2, 4)).sum().backward()
    assert flops.fields(1.0)["flops"] == 2 * (2 * 2 * 4 * 4) and not counters["frames"]  # fwd + weight grad
    model(torch.randn(2, 4)).sum().backward()
    assert counters["frames"]["ok"] == 1
    torch._dynamo.reset()
