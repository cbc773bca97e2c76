"""The CLI (in-process, plus one real `python -m concepts --help`) and tokenizer training."""
import json
import subprocess
import sys
from pathlib import Path

from concepts_testdata import CAPTIONS, make_version

from concepts.cli import main
from concepts.encode import encode_batch
from concepts.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def test_help_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "concepts", "build", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "key=value" in out.stdout


def test_build_show_annotate_train(tmp_path, capsys):
    vdir = make_version(tmp_path, [CAPTIONS, CAPTIONS[:3]])
    assert main(["build", str(vdir), "--quiet", "vocab.min_count=2"]) == 0
    assert "built" in capsys.readouterr().out
    assert main(["build", str(vdir), "--quiet", "vocab.min_count=2"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["show", str(vdir), "--json", "--top", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [t[1] for t in shown["top"]][0] == "dog"
    # only "Children are playing football in the park" has no concept seen twice
    assert shown["coverage"]["captions"] == 11 and shown["coverage"]["captions_with_concept"] == 10
    assert main(["show", str(vdir)]) == 0
    assert "words carrying a concept" in capsys.readouterr().out
    assert main(["annotate", str(vdir), "--quiet"]) == 0
    assert "wrote 0" in capsys.readouterr().out
    # errors: a bad key names the key, a missing version says so; exit code 2, no traceback
    assert main(["build", str(vdir), "vocab.bogus=1"]) == 2
    assert "vocab.bogus" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "nope")]) == 2
    # a WordPiece vocabulary trained on the captions is usable by the encoder
    out_dir = tmp_path / "tok"
    assert main(["train-tokenizer", str(vdir), "--out", str(out_dir), "--quiet",
                 "tokenizer.vocab_size=120", "tokenizer.min_frequency=1"]) == 0
    tok = load_tokenizer(str(out_dir / "vocab.txt"))
    assert tok.token_to_id("[PAD]") == 0 and tok.get_vocab_size() <= 120
    enc = encode_batch(["Two dogs are running"], [[[4, 8, 0]]], tok, max_len=12)
    n = int(enc["attention_mask"][0].sum())
    assert enc["input_ids"][0, 0] == tok.token_to_id("[CLS]")
    assert enc["input_ids"][0, n - 1] == tok.token_to_id("[SEP]")
    assert tok.token_to_id("[UNK]") not in enc["input_ids"][0, :n].tolist()  # all words seen in training
    assert (enc["concept_labels"][0] == 0).sum() >= 1


def test_overrides_and_options_in_any_order(tmp_path, capsys):
    assert main(["build", str(tmp_path), "vocab.min_count=2", "--quiet", "vocab.bogus=1",
                 "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "vocab.bogus" in err and len(err.strip().splitlines()) == 1
