"""Every bad start gives ONE line on stderr naming the key or file at fault, exit code 2, and
leaves an existing run directory byte-for-byte unchanged."""
from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path

import pytest
from train_helpers import TINY, run_cli, train_args, tree_digest

from mamo.train import main

CKPT = "checkpoints/step_0000010"


@pytest.fixture(scope="module")
def other_vocab(dataset, tmp_path_factory) -> Path:
    """The same dataset version with a second concept vocabulary (other parameters) as LATEST."""
    copy = tmp_path_factory.mktemp("other-vocab") / "v1"
    shutil.copytree(dataset, copy)
    r = run_cli(["-m", "concepts", "build", str(copy), "--quiet", "vocab.min_count=3"])
    assert r.returncode == 0, r.stderr
    assert (copy / "concepts" / "LATEST").read_text() != (dataset / "concepts" / "LATEST").read_text()
    return copy


@pytest.fixture(scope="module")
def no_annotations(dataset, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("no-ann") / "v1"
    shutil.copytree(dataset, copy)
    vocab = (copy / "concepts" / "LATEST").read_text().strip()
    (copy / "concepts" / vocab / "annotations" / "00001.jsonl").unlink()
    return copy


def start(capsys, dataset, run_dir, *extra) -> tuple[int, str]:
    args = train_args(dataset, run_dir, *extra)[2:]  # drop "-m mamo.train"
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, expect",
    [
        (["train.stepz=3"], "config key 'train.stepz': unknown key"),
        (["optim.lr=fast"], "config key 'optim.lr': must be a number"),
        (["train.grad_accum=0"], "config key 'train.grad_accum': must be >= 1"),
        (["train.precision=fp16"], "config key 'train.precision'"),
        (["data.vocab_id=0123456789abcdef"], "concepts: concept vocabulary '0123456789abcdef' not found"),
        (["data.version_dir=/nonexistent/synthetic/v1"], "dataset: no manifest.json in /nonexistent"),
        # resuming the run with another model preset/size
        (["model.fusion.depth=2"], "config key 'model.fusion.depth': differs from the run being resumed"),
        (["loss.text_target=mlm"], "config key 'loss.text_target': differs from the run being resumed"),
        (["data.batch_size=64"], "config key 'data.batch_size'"),
        pytest.param(["train.tensorboard=true"], "config key 'train.tensorboard': needs the `tensorboard` package",
                     marks=pytest.mark.skipif(find_spec("tensorboard") is not None, reason="tensorboard installed")),
    ],
)
def test_bad_start_on_existing_run(capsys, dataset, reference, extra, expect):
    before = tree_digest(reference)
    code, err = start(capsys, dataset, reference, *extra)
    assert code == 2
    assert expect in one_line(err)
    assert tree_digest(reference) == before


@pytest.mark.slow
def test_missing_annotations(capsys, no_annotations, tmp_path):
    code, err = start(capsys, no_annotations, tmp_path / "run")
    assert code == 2 and "no annotations for shard 00001" in one_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_checkpoint_of_another_vocabulary_refused(capsys, reference, other_vocab, tmp_path):
    code, err = start(capsys, other_vocab, tmp_path / "run", f"train.init_from={reference / CKPT}")
    assert code == 2 and "made for another concept vocabulary (vocab_id" in one_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_resuming_on_another_vocabulary_refused(capsys, reference, other_vocab):
    before = tree_digest(reference)
    # Same manifest (a copy), but concepts/LATEST now names another vocabulary.
    code, err = start(capsys, other_vocab, reference)
    assert code == 2 and "data: vocab_id is '" in one_line(err) and "but the run in" in one_line(err)
    assert tree_digest(reference) == before


@pytest.mark.slow
def test_checkpoint_of_another_preset_refused(capsys, dataset, reference, tmp_path):
    code, err = start(capsys, dataset, tmp_path / "run", f"train.init_from={reference / CKPT}",
                      "model.vision.depth=2")
    assert code == 2 and "made for another model (model.vision.depth: checkpoint 1, config 2" in one_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_resume_without_checkpoint_and_foreign_run_dir(capsys, dataset, tmp_path):
    code, err = start(capsys, dataset, tmp_path / "fresh", "--resume")
    assert code == 2 and "no checkpoint to resume from" in one_line(err)
    assert not (tmp_path / "fresh").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("someone's files")
    code, err = start(capsys, dataset, used)
    assert code == 2 and "already holds notes.txt but no checkpoint" in one_line(err)
    assert tree_digest(used) == {"notes.txt": tree_digest(used)["notes.txt"]}


@pytest.mark.slow
def test_cli_process_prints_one_line_and_exits_2(dataset, reference):
    """The real process: no traceback, exit code 2."""
    before = tree_digest(reference)
    r = run_cli(train_args(dataset, reference, "optim.betas=[0.9, 1.5]"))
    assert r.returncode == 2
    assert r.stderr.strip() == "error: config key 'optim.betas[1]': must be in [0, 1), got 1.5"
    assert tree_digest(reference) == before


def test_check_prints_the_plan_and_writes_nothing(capsys, dataset, reference, tmp_path):
    fresh = tmp_path / "fresh"
    args = train_args(dataset, fresh, "train.grad_accum=2")[2:] + ["--check"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fresh start" in out and "4 per rank x 2 micro-batches x 1 process(es) = 8 samples per step" in out
    assert "32 samples in 2 shards" in out and "every start check passed" in out
    assert "trainable parameters; training state per rank" in out
    assert not fresh.exists()
    # on a run with checkpoints: the resume point, and the run dir stays byte-identical
    copy = tmp_path / "ref"
    shutil.copytree(reference, copy)
    before = tree_digest(copy)
    assert main(train_args(dataset, copy)[2:] + ["--check"]) == 0
    assert f"resume from {copy / CKPT}" in capsys.readouterr().out
    assert tree_digest(copy) == before
    # and a bad key is still one line, exit 2
    code = main(train_args(dataset, fresh, "train.stepz=1")[2:] + ["--check"])
    assert code == 2 and "train.stepz" in capsys.readouterr().err


def test_options_and_overrides_mix_in_any_order(capsys, dataset, tmp_path):
    """`--config c.yaml a.b=1 --no-progress c.d=2`: overrides after an option still apply."""
    fresh = tmp_path / "fresh"
    args = ["--config", "configs/tiny.yaml", f"data.version_dir={dataset}", "--run-dir", str(fresh),
            *TINY, "--no-progress", "train.grad_accum=2", "--check", "data.batch_size=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 per rank x 2 micro-batches x 1 process(es) = 4 samples per step" in out
    assert not fresh.exists()
