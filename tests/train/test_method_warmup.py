"""The trainer drives MAMO's warm-ups from its step count (``TrainingJob.before_step``): in a
real run, w_mmm is 0 at the first step (mmm_warmup=0.1 of 10 steps) and full from the second."""
import json


def test_the_first_step_weighs_no_masked_modelling_then_full_weight(reference):
    rows = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    first, second = rows[0], rows[1]
    assert first["step"] == 1 and first["mmm"] > 0
    assert abs(first["loss"] - (first["itc"] + first["itm"])) < 1e-4
    assert abs(second["loss"] - (second["itc"] + second["itm"] + second["mmm"])) < 1e-4
