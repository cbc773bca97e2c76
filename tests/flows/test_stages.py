"""The stage cache shared by the demo and the ablation (fast: no child processes), and the
entry points of the orchestration CLIs."""
import subprocess
import sys
from pathlib import Path

import pytest

from flows.stages import Stages, Stamp, stage_env
from mamo.core.cli import UserError

REPO = Path(__file__).resolve().parents[2]


def _stages(root, force=()):
    return Stages(root, ("a", "b", "c"), list(force))


def test_stages_skip_when_done_and_redo_what_follows(tmp_path, capsys):
    made = []

    def go(st, params=None):
        for name in st.names:
            out = tmp_path / name
            st.run(name, params or {"n": 1}, out.is_file,
                   lambda out=out, name=name: (made.append(name), out.write_text("x")))

    go(_stages(tmp_path))
    assert made == ["a", "b", "c"] and "first run" in capsys.readouterr().out
    made.clear()
    go(_stages(tmp_path))
    assert made == [] and capsys.readouterr().out.count("skipped") == 3
    go(_stages(tmp_path, force=["b"]))
    out = capsys.readouterr().out
    assert made == ["b", "c"] and "forced" in out and "an earlier stage was redone" in out
    made.clear()
    (tmp_path / "c").unlink()  # an output that went missing is made again
    go(_stages(tmp_path))
    assert made == ["c"]
    made.clear()
    go(_stages(tmp_path), params={"n": 2})
    assert made == ["a", "b", "c"] and "settings changed" in capsys.readouterr().out


def test_stage_whose_output_is_invalid_fails_and_leaves_no_stamp(tmp_path):
    st = _stages(tmp_path)
    with pytest.raises(UserError, match="stage a finished but its output is not valid"):
        st.run("a", {}, lambda: False, lambda: None)
    assert not (tmp_path / "stages" / "a.json").exists()


def test_stamp_matches_only_the_same_settings(tmp_path):
    f = tmp_path / "run" / "stamp.json"
    f.parent.mkdir()
    assert not Stamp(f, ["x=1"]).matches()
    Stamp(f, ["x=1"]).write(1.5)
    assert Stamp(f, ["x=1"]).matches() and not Stamp(f, ["x=2"]).matches()
    assert Stamp(f, ["x=1"]).old["seconds"] == 1.5


def test_stage_env_is_quiet_with_prefect_state_under_root(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    env = stage_env(tmp_path)
    assert env["PREFECT_HOME"] == str((tmp_path / ".prefect").resolve())
    assert env["DO_NOT_TRACK"] == "1" and env["TOKENIZERS_PARALLELISM"] == "false"


@pytest.mark.parametrize("module", ["mamo.demo", "flows.demo", "mamo.ablation", "flows.ablation"])
def test_orchestration_clis_help_and_one_line_errors(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "dotted.key=value" in r.stdout
    # options and overrides in any order; a bad key is one line, exit 2
    r = subprocess.run([sys.executable, "-m", module, "nope.key=1", "--config",
                        str(REPO / "configs" / f"{module.split('.')[1]}.yaml")], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "nope" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
