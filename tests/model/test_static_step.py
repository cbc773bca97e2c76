"""The pre-training step without host syncs: the random draws are made eagerly on the batch's
device (``MAMO.draw``); everything after them (``MAMO.step``) has fixed shapes, so
torch.compile captures it as one graph, and the compiled step gives eager's losses."""
import pytest
import torch

from mamo.objectives import itm, mmm
from model_testdata import make_batch, micro_model

TERMS = ("loss", "itc", "itm", "mmm", "mmm_implicit", "mmm_visual", "mmm_concept")
# concept_mlm: the concept head and the MLM fallback head on the same fixed-shape rows
TARGETS = pytest.mark.parametrize("target", ["concept", "concept_mlm"])


def _model_and_batch(target="concept"):
    model = micro_model([f"text_target={target}"]).train()
    model.text_init = None
    return model, make_batch(batch=6, size=32)


@TARGETS
def test_the_step_after_the_draws_has_no_graph_break(target):
    model, batch = _model_and_batch(target)
    draws = model.draw(batch, 7)
    explained = torch._dynamo.explain(model.step)(batch, draws)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@TARGETS
def test_compiled_step_gives_eager_losses_and_gradients(target):
    torch._dynamo.reset()
    eager, batch = _model_and_batch(target)
    compiled, _ = _model_and_batch(target)
    compiled.load_state_dict(eager.state_dict())
    step = torch.compile(compiled.step, backend="aot_eager", fullgraph=True)
    for seed in (3, 4):  # a second step: same graph, new draws (no recompilation by seed)
        a = eager(batch, seed)
        b = step(batch, compiled.draw(batch, seed))
        for k in TERMS + (("mmm_mlm",) if target == "concept_mlm" else ()):
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
        a["loss"].backward()
        b["loss"].backward()
        for (name, pa), (_, pb) in zip(eager.named_parameters(), compiled.named_parameters()):
            if pa.grad is not None:
                torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(compiled.queue.image_queue, eager.queue.image_queue)


def test_draws_are_on_the_device_and_a_function_of_the_seed():
    model, batch = _model_and_batch()
    a, b, c = model.draw(batch, 1), model.draw(batch, 1), model.draw(batch, 2)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["itm_uniform"], c["itm_uniform"])
    assert a["itm_uniform"].min() > 0 and a["itm_uniform"].max() <= 1


def test_fixed_shape_masked_rows_equal_boolean_indexing():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 9, 6, generator=g)
    mask = torch.rand(4, 9, generator=g) > 0.6
    bound = int(mask.sum(1).max())
    idx = mmm.masked_rows(mask, bound)
    rows, valid = mmm.take(hidden, idx), mmm.take(mask, idx)
    assert rows.shape == (4 * bound, 6)
    # the masked rows, each once, as boolean indexing picks them (order aside)
    got = sorted(map(tuple, rows[valid].tolist()))
    assert got == sorted(map(tuple, hidden[mask].tolist()))


def test_inverse_cdf_negatives_never_pick_an_excluded_candidate():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(5, 5, generator=g)
    exclude = torch.eye(5, dtype=torch.bool)
    exclude[0, 1:4] = True  # row 0 may only draw candidate 4
    for seed in range(20):
        u = 1.0 - torch.rand(2, 5, generator=torch.Generator().manual_seed(seed))
        neg_t, neg_i = itm.sample_hard_negatives(sim, exclude, uniform=u)
        assert not exclude[torch.arange(5), neg_t].any() and not exclude[torch.arange(5), neg_i].any()
        assert neg_t[0] == 4 and neg_i[0] == 4
    # u = 1 takes the last candidate with weight, a tiny u the first one
    w = torch.tensor([[0.0, 0.5, 0.0, 0.5]])
    assert itm.sample_by_uniform(w, w, torch.tensor([[1.0], [1e-6]])) == (torch.tensor([3]), torch.tensor([1]))


@TARGETS
@pytest.mark.parametrize("device_type", ["cpu"])
def test_no_host_sync_ops_in_the_step(device_type, target):
    """The step's graph holds no op that copies a value to the host (``.item()``/``.cpu()``
    appear as `aten._local_scalar_dense` / device copies in a captured graph)."""
    model, batch = _model_and_batch(target)
    draws = model.draw(batch, 5)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch.compile(model.step, backend=backend, fullgraph=True)(batch, draws)
    code = "\n".join(gm.code for gm in graphs)
    for op in ("item(", ".cpu(", "tolist(", "nonzero", "_local_scalar_dense"):
        assert op not in code, op
