"""A transformer block with Triton attention under torch.compile (Inductor's CPU backend, the
kernel in Triton's interpreter): the path `train.compile=true model.attn_impl=triton` takes."""
import pytest
import torch

from mamo.trainer.parallelize import compile_blocks

pytest.importorskip("triton")


def test_compiled_block_with_triton_attention_matches_eager_sdpa():
    import torch._dynamo

    from mamo.model.transformer import TransformerBlock

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    eager = TransformerBlock(64, 4, 128, norm_first=False, eps=1e-12, impl="sdpa")
    holder = torch.nn.Sequential(TransformerBlock(64, 4, 128, norm_first=False, eps=1e-12,
                                                  impl="triton"))
    holder[0].load_state_dict(eager.state_dict())
    assert compile_blocks(holder) == 1
    x = torch.randn(3, 21, 64, requires_grad=True)
    mask = torch.rand(3, 21) < 0.3
    mask[:, 0] = False
    mask[2] = True  # a fully padded element: zeros from attention, no NaN
    got, _ = holder[0](x, mask)
    got_grad, = torch.autograd.grad(got.square().sum(), x)
    want, _ = eager(x, mask)
    want_grad, = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-4, rtol=1e-4)
    # the block really ran compiled, as one graph (the custom op kept Dynamo from breaking)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert not torch._dynamo.utils.counters["graph_break"]
