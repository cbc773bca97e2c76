"""``LANG=C`` / ``LC_ALL=C`` environments still read and write UTF-8 captions: real
subprocesses of ingest (a folder source), concepts (build, show) and the evaluation report.

Two environments: the C locale with PYTHONUTF8 unset (Python then turns its UTF-8 mode on by
itself, PEP 540), and the C locale with ``PYTHONUTF8=0``, where ``open()`` without
``encoding=`` and stdout really are ASCII; the second is the one that finds a missing
``encoding=``."""
import json
import subprocess

import pytest
from pipeline_faults import PY, REPO, env

from ingest.captions import normalize_caption
from ingest.manifest import load_manifest
from ingest.shards import read_shard

CAPTIONS = ["a café – naïve red circle", "zwei Straßen über dem Fluß", "«un chien» sur l’herbe 🙂",
            "日本の 赤い 四角", "plain ascii dog"]


def _c_locale(utf8_mode: str | None) -> dict[str, str]:
    e = env(LC_ALL="C", LANG="C", LANGUAGE="C")
    e.pop("PYTHONUTF8", None)
    e.pop("PYTHONIOENCODING", None)
    if utf8_mode is not None:
        e["PYTHONUTF8"] = utf8_mode
    return e


def _run(e, *args):
    r = subprocess.run([PY, *args], cwd=REPO, env=e, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-3000:]
    return r


@pytest.mark.parametrize("utf8_mode", [None, "0"], ids=["C", "C-PYTHONUTF8=0"])
def test_c_locale_keeps_utf8_captions(tmp_path, utf8_mode):
    from PIL import Image

    e = _c_locale(utf8_mode)
    probe = subprocess.run([PY, "-c", "import locale,sys; print(locale.getpreferredencoding(False), sys.stdout.encoding)"],
                           env=e, capture_output=True, text=True)
    if utf8_mode == "0":
        assert "utf" not in probe.stdout.lower(), probe.stdout  # the fault is really there

    src = tmp_path / "src"
    src.mkdir()
    for i, cap in enumerate(CAPTIONS * 4):
        Image.new("RGB", (24, 24), (40 * (i % 5), 90, 200)).save(src / f"{i:02d}.png")
        (src / f"{i:02d}.txt").write_bytes(cap.encode("utf-8"))
    out = tmp_path / "out"
    _run(e, "-m", "ingest", "local", f"out={out}", "dataset=loc", "version=v1", "source.kind=folder",
         f"source.path={src}", "samples_per_shard=8", "download.image_size=24",
         "filters.min_image_size=1", "filters.dedup_images=false", "progress=false")
    vdir = out / "loc" / "v1"
    m = load_manifest(vdir)
    assert m["counts"]["written"] == 20
    got = sorted(s["txt"] for sh in m["shards"] for s in read_shard(vdir / sh["tar"]))
    assert got == sorted(normalize_caption(c) for c in CAPTIONS * 4)

    _run(e, "-m", "concepts", "build", str(vdir), "--quiet", "vocab.min_count=1")
    shown = _run(e, "-m", "concepts", "show", str(vdir), "--json")
    assert json.loads(shown.stdout.decode("utf-8"))["coverage"]["captions"] == 20
    text = _run(e, "-m", "concepts", "show", str(vdir), "--top", "50")
    assert b"concept" in text.stdout
    vocab = json.loads(shown.stdout.decode("utf-8"))["top"]
    assert any(not c[1].isascii() for c in vocab), vocab  # non-ASCII lemmas went through

    script = (
        "import sys, numpy as np\n"
        "from mamo.evaluation.report import CaptionHit, RetrievalExample, check_report, write_report\n"
        "img = np.zeros((16, 16, 3), np.uint8)\n"
        f"caps = {ascii(CAPTIONS[:3])}\n"  # (ASCII source: an ASCII locale's argv)
        "ex = [RetrievalExample('k0', img, caps[0], [CaptionHit(c, 0.5, c == caps[0]) for c in caps])]\n"
        "p = write_report(sys.argv[1], {'run': 'caf\\xe9'}, None, ex, 'model: {name: caf\\xe9}\\n')\n"
        "assert check_report(p) == [], check_report(p)\n"
        "print('ok')\n")
    r = _run(e, "-c", script, str(tmp_path / "report"))
    assert r.stdout.decode("utf-8").startswith("ok")
    html = (tmp_path / "report" / "index.html").read_bytes().decode("utf-8")
    assert "café" in html
