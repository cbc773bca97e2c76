"""Near-duplicates and decontamination: resized + re-encoded copies are caught, unrelated
images are not; through the download path an eval image is `contaminated` and a copy of an
earlier version's image is a `near_duplicate`; `python -m ingest decontaminate` reports
overlaps."""
import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ingest import synthetic as syn
from ingest.accounting import read_failures
from ingest.config import IngestConfig
from ingest.download import ingest_urls
from ingest.http_server import serve_routes
from ingest.near_dup import HashIndex, fingerprint
from ingest.shards import iter_version_samples
from ingest.synthetic_version import write_synthetic_version
from ingest.verify import verify_version
from mamo.core.config import load_config


def _variant(jpg_or_img):
    im = jpg_or_img if isinstance(jpg_or_img, Image.Image) else Image.open(io.BytesIO(jpg_or_img))
    im = im.convert("RGB")
    w, h = im.size
    b = io.BytesIO()
    im.resize((int(w * 0.9), int(h * 0.9)), Image.Resampling.BILINEAR).save(
        b, format="JPEG", quality=60)
    return b.getvalue()


def _jpeg(im, q=95):
    b = io.BytesIO()
    im.save(b, format="JPEG", quality=q)
    return b.getvalue()


def _photo_like(seed):
    """A smooth random 'photo' (low-frequency noise) unlike the synthetic scenes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    small = (rng.random((6, 6, 3)) * 255).astype("uint8")
    return Image.fromarray(small).resize((120, 90), Image.Resampling.BICUBIC)


def test_copies_caught_unrelated_not():
    originals = [syn.render_image(syn.generate_scene(0, i), 96) for i in range(60)]
    originals += [_photo_like(s) for s in range(20)]
    index = HashIndex(6)
    for i, im in enumerate(originals):
        h, t = fingerprint(_jpeg(im))
        assert index.find(h, t) is None, f"image {i} matched an unrelated one"
        index.add(h, t, f"k{i}")
    for i, im in enumerate(originals):
        hit = index.find(*fingerprint(_variant(im)))
        assert hit is not None and hit[0] == f"k{i}", (i, hit)


def _find_by_scan(entries, max_d, h, t):
    """The reference: every stored hash in order, the first of the smallest distance whose
    thumbnail agrees within the tolerance."""
    from ingest.near_dup import COLOUR_TOLERANCE

    best = None
    for label, h2, t2 in entries:
        d = (h ^ h2).bit_count()
        close = max(abs(a - b) for a, b in zip(t, t2)) <= COLOUR_TOLERANCE
        if d <= max_d and close and (best is None or d < best[1]):
            best = (label, d)
    return best


def test_index_find_matches_a_full_scan():
    """Banded lookup (threshold <= 7) and full scan (> 7) both agree with a plain scan,
    across the arrays' growth past their first 1,024 slots, ties to the earliest added."""
    import random

    rng = random.Random(0)
    base = [rng.getrandbits(64) for _ in range(40)]
    for max_d in (0, 3, 6, 12):
        index, entries = HashIndex(max_d), []
        for i in range(1500):
            h = base[i % 40]
            for _ in range(rng.randrange(9)):
                h ^= 1 << rng.randrange(64)
            t = bytes(rng.choice((10, 200)) if i % 7 == 0 else 100 + rng.randrange(20)
                      for _ in range(192))
            if i % 3 == 0:
                assert index.find(h, t) == _find_by_scan(entries, max_d, h, t), (max_d, i)
            index.add(h, t, f"k{i}")
            entries.append((f"k{i}", h, t))
        assert len(index) == 1500
        hits = sum(index.find(h, t) is not None for _, h, t in entries[:200])
        assert hits == 200  # every stored entry finds at least itself


def _cfg(tmp_path, table, **over):
    o = [f"out={tmp_path / 'out'}", "dataset=web", "version=v1", "source.kind=urls",
         f"source.path={table}", "download.allow_networks=[127.0.0.1/32]",
         "download.image_size=64", "download.processes=1", "download.threads=4",
         "download.retries=0", "download.robots_txt=false", "samples_per_shard=20",
         "progress=false", "filters.min_image_size=8"]
    o += [f"{k}={v}" for k, v in over.items()]
    return load_config(IngestConfig, None, o)


def test_download_path_contaminated_and_near_duplicate(tmp_path):
    out = tmp_path / "out"
    eval_dir = out / "evalset" / "test"
    write_synthetic_version(out, "evalset", "test", syn.SyntheticConfig(n=3, seed=11,
                                                                       image_size=96), 10)
    earlier = out / "web" / "v0"
    write_synthetic_version(out, "web", "v0", syn.SyntheticConfig(n=3, seed=12, image_size=96),
                            10)
    eval_jpg = next(iter_version_samples(eval_dir, exts=("jpg",)))["jpg"]
    earlier_jpg = next(iter_version_samples(earlier, exts=("jpg",)))["jpg"]
    a, b = _photo_like(100), _photo_like(101)
    routes = {"/a.jpg": _jpeg(a), "/b.jpg": _jpeg(b), "/a_copy.jpg": _variant(a),
              "/eval_copy.jpg": _variant(eval_jpg), "/old_copy.jpg": _variant(earlier_jpg)}
    expected = {"/a.jpg": ("written", ""), "/b.jpg": ("written", ""),
                "/a_copy.jpg": ("duplicate", "near_duplicate"),
                "/eval_copy.jpg": ("filtered", "contaminated"),
                "/old_copy.jpg": ("duplicate", "near_duplicate")}
    with serve_routes({p: (lambda body: lambda n: (200, {}, body))(v)
                       for p, v in routes.items()}) as base:
        paths = list(expected)
        table = tmp_path / "urls.parquet"
        pq.write_table(pa.table({"url": [base + p for p in paths],
                                 "caption": [f"caption {i}" for i in range(len(paths))]}), table)
        m = ingest_urls(_cfg(tmp_path, table, **{"filters.exclude_versions": f"[{eval_dir}]"}))
    v1 = out / "web" / "v1"
    fails = {r["row"]: r for r in read_failures(v1 / "failures.parquet")}
    for i, p in enumerate(paths):
        got = (fails[i]["status"], fails[i]["reason"]) if i in fails else ("written", "")
        assert got == expected[p], (p, got)
    assert "first copy r000000000" in fails[paths.index("/a_copy.jpg")]["detail"]
    assert "v0/" in fails[paths.index("/old_copy.jpg")]["detail"]
    assert "test/" in fails[paths.index("/eval_copy.jpg")]["detail"]
    assert m["reasons"]["duplicate"] == {"near_duplicate": 2}
    assert m["reasons"]["filtered"] == {"contaminated": 1}
    assert verify_version(v1).ok


def test_decontaminate_cli(tmp_path):
    out = tmp_path / "out"
    # synthetic sample i is the same whatever n is: the 8 of "eval" are inside "train"
    write_synthetic_version(out, "syn", "train", syn.SyntheticConfig(n=20, seed=0, image_size=64),
                            10)
    write_synthetic_version(out, "syn", "eval", syn.SyntheticConfig(n=8, seed=0, image_size=64),
                            10)
    p = subprocess.run([sys.executable, "-m", "ingest", "decontaminate", str(out / "syn/train"),
                        "--against", str(out / "syn/eval")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout.strip().splitlines()[-1])
    assert rep["overlaps"] >= 8 and rep["by_image"] == rep["overlaps"]
    p = subprocess.run([sys.executable, "-m", "ingest", "decontaminate", str(out / "syn/train"),
                        "--against", str(out / "nope")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:")
