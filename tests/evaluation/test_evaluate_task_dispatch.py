"""`python -m mamo.evaluate --task T` is the downstream tasks' evaluation."""
import pytest

from mamo.evaluate import main


def test_task_option_goes_to_the_downstream_evaluation(tmp_path, capsys):
    code = main(["--task", "vqa", "--checkpoint", str(tmp_path / "missing")])
    assert code == 2
    err = capsys.readouterr().err
    assert "data.tasks_dir" in err  # the downstream config was validated, not --run-dir demanded


def test_one_parser_overrides_anywhere_and_task_refuses_pretraining_options(tmp_path, capsys):
    # a dotted override between options reaches the fine-tuning config (here: its validation)
    code = main(["--task", "vqa", "optim.lr=-1", "--checkpoint", str(tmp_path / "missing")])
    assert code == 2 and "optim.lr" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--task", "vqa", "--checkpoint", str(tmp_path), "--k", "4"])
    assert e.value.code == 2
    assert "--k is an option of the pre-training evaluation" in capsys.readouterr().err
