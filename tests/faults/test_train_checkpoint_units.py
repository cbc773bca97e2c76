"""checkpoint.validate on real files written by save_checkpoint: truncated, bit-flipped,
without digests (old checkpoints), and a save onto a full tmpfs."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fault_helpers import flip_byte, truncate
from mamo.core.files import OutputError
from mamo.trainer import checkpoint as ckpt


def _save(run_dir, step, width=64):
    torch.manual_seed(step)
    model = nn.Linear(width, width)
    return ckpt.save_checkpoint(run_dir, step, model, {"step": step, "x": torch.randn(width)},
                                {"model": {}}, keep_last=5)


def test_a_good_checkpoint_validates_with_its_digests(tmp_path):
    path = _save(tmp_path, 1)
    meta = ckpt.validate(path)
    assert set(meta["files"]) == {"model.safetensors", "state.pt"}
    assert meta["files"]["state.pt"]["bytes"] == (path / "state.pt").stat().st_size


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
def test_truncated_or_bit_flipped_files_are_named(tmp_path, name):
    a, b = _save(tmp_path, 1), _save(tmp_path, 2)
    truncate(a / name)
    with pytest.raises(ckpt.CheckpointError, match=name):
        ckpt.validate(a)
    flip_byte(b / name)
    with pytest.raises(ckpt.CheckpointError, match=f"{name}: sha256 differs"):
        ckpt.validate(b)


def test_fallback_to_the_newest_that_loads_with_the_bad_one_named(tmp_path, caplog):
    _save(tmp_path, 1)
    good = _save(tmp_path, 2)
    bad = _save(tmp_path, 3)
    truncate(bad / "model.safetensors", 0.9)
    with caplog.at_level("WARNING"):
        found, rejected = ckpt.resumable_checkpoint(tmp_path)
    assert found == good and [p for p, _ in rejected] == [bad]
    assert "step_0000003" in caplog.text and "unusable" in caplog.text


def test_old_checkpoints_without_digests_still_validate_by_header_and_size(tmp_path):
    path = _save(tmp_path, 1)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]
    (path / "meta.json").write_text(json.dumps(meta))
    ckpt.validate(path)
    truncate(path / "model.safetensors", 0.95)
    with pytest.raises(ckpt.CheckpointError, match="truncated"):
        ckpt.validate(path)


def test_disk_full_during_a_save_leaves_nothing_that_looks_complete(tmpfs):
    run_dir = tmpfs("3m")
    _save(run_dir, 1, width=64)  # small: fits
    with pytest.raises(OutputError, match="No space left on device") as e:
        _save(run_dir, 2, width=1024)  # 4 MB of weights: does not
    assert str(run_dir / "checkpoints") in str(e.value)
    assert [s for s, _ in ckpt.list_checkpoints(run_dir)] == [1]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_0000001"]
    ckpt.validate(run_dir / "checkpoints" / "step_0000001")
