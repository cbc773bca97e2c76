"""`python -m mamo.evaluate --task T` is the downstream tasks' evaluation."""
from mamo.evaluate import main


def test_task_option_goes_to_the_downstream_evaluation(tmp_path, capsys):
    code = main(["--task", "vqa", "--checkpoint", str(tmp_path / "missing")])
    assert code == 2
    err = capsys.readouterr().err
    assert "data.tasks_dir" in err  # the downstream config was validated, not --run-dir demanded
