"""`ingest download` and `ingest local` are `ingest run` restricted to their source kinds."""
from ingest.__main__ import main


def test_local_refuses_a_url_table(capsys):
    assert main(["local", "source.kind=urls", "source.path=x.parquet"]) == 2
    assert "source.kind" in capsys.readouterr().err


def test_bad_key_is_one_line_naming_it(capsys):
    assert main(["download", "source.kind=urls", "source.pathx=1"]) == 2
    assert "source.pathx" in capsys.readouterr().err


def test_overrides_and_options_in_any_order(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: t\n")
    assert main(["local", "source.kind=urls", "--config", str(cfg), "source.path=x.parquet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config key 'source.kind'") and len(err.strip().splitlines()) == 1


def test_verify_of_a_missing_dir_is_a_user_error_not_a_damaged_version(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope: no such directory" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert main(["verify", str(tmp_path / "empty")]) == 1  # a dir that is no complete version
