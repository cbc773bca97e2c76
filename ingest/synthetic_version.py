"""Writing the synthetic data set as a dataset version (local, no download), and as a URL
source (image files + a table of captions) to be served over HTTP and ingested through the
real download path."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .accounting import Accounting
from .synthetic import SyntheticConfig, generate_samples, make_sample, render_image
from .version import VersionWriter, fingerprint, lock_version, sample_meta


def write_synthetic_version(root: str | Path, dataset: str = "synthetic", version: str = "v1",
                            cfg: SyntheticConfig | None = None, samples_per_shard: int = 1000,
                            overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Generate ``cfg.n`` samples into ``<root>/<dataset>/<version>``; returns the manifest."""
    cfg = cfg or SyntheticConfig()
    source = {"kind": "synthetic", "seed": cfg.seed, "n": cfg.n}
    params = {"image_size": cfg.image_size, "kind_weights": list(cfg.kind_weights),
              "jpeg_quality": cfg.jpeg_quality, "texture": cfg.texture,
              "samples_per_shard": samples_per_shard}
    if cfg.twins:  # only when on: a version without twins keeps its fingerprint and manifest
        params["twins"] = cfg.twins
    with lock_version(root, dataset, version):
        acc = Accounting(n_input=cfg.n)
        writer = VersionWriter(root, dataset, version, samples_per_shard, overwrite, acc,
                               fingerprint=fingerprint(source, params))
        try:
            for s in tqdm(generate_samples(cfg, start=writer.resume_row), total=cfg.n,
                          initial=writer.resume_row, desc="synthetic", disable=not progress,
                          unit="img"):
                meta = sample_meta(s.key, s.jpg, s.caption, s.width, s.height, s.width,
                                   s.height, source_path=f"synthetic:{cfg.seed}/{s.scene['index']}",
                                   synthetic=s.scene)
                writer.add(s.key, s.jpg, s.caption, meta, row=s.scene["index"])
                acc.written(s.scene["index"])
        except BaseException:
            writer.abort()
            raise
        return writer.finish(source, params, acc)


def write_synthetic_url_source(out_dir: str | Path, cfg: SyntheticConfig | None = None,
                               image_format: str = "png", progress: bool = True) -> Path:
    """Write ``images/KEY.<fmt>`` and ``captions.jsonl`` (path, caption, synthetic scene) under
    ``out_dir``; turn it into a URL table with ``url_table_for`` once a server runs."""
    cfg = cfg or SyntheticConfig()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in tqdm(range(cfg.n), desc="synthetic source", disable=not progress, unit="img"):
        s = make_sample(cfg.seed, i, cfg.image_size, tuple(cfg.kind_weights), cfg.jpeg_quality,
                        cfg.texture, cfg.twins)
        rel = f"images/{s.key}.{image_format}"
        if image_format == "png":
            render_image(s.scene, cfg.image_size, cfg.texture).save(out / rel, format="PNG")
        else:
            (out / rel).write_bytes(s.jpg)
        lines.append(json.dumps({"path": rel, "caption": s.caption,
                                 "synthetic": json.dumps(s.scene, sort_keys=True)}))
    (out / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def url_table_for(source_dir: str | Path, base_url: str, out_path: str | Path | None = None) -> Path:
    """A parquet URL table (url, caption, synthetic) for a source written by
    ``write_synthetic_url_source`` and served at ``base_url``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source_dir = Path(source_dir)
    rows = [json.loads(line) for line in
            (source_dir / "captions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    base = base_url.rstrip("/")
    table = pa.table({"url": [f"{base}/{r['path']}" for r in rows],
                      "caption": [r["caption"] for r in rows],
                      "synthetic": [r["synthetic"] for r in rows]})
    out = Path(out_path) if out_path else source_dir / "urls.parquet"
    pq.write_table(table, out)
    return out


def ingest_synthetic_over_http(root: str | Path, dataset: str = "synthetic-web",
                               version: str = "v1", cfg: SyntheticConfig | None = None,
                               source_size: int = 128, samples_per_shard: int = 1000,
                               processes: int = 2, threads: int = 16,
                               overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """The demo's "real download": write the synthetic images, serve them from a loopback
    HTTP server, and ingest the URL table through img2dataset into
    ``<root>/<dataset>/<version>`` (images resized to ``cfg.image_size``; the ground truth
    rides along in ``KEY.json["synthetic"]``). Returns the manifest. Call it under an
    ``if __name__ == "__main__":`` guard (img2dataset spawns workers)."""
    from mamo.core.config import load_config

    from .config import IngestConfig
    from .download import ingest_urls
    from .http_server import serve_directory

    cfg = cfg or SyntheticConfig()
    src_cfg = SyntheticConfig(n=cfg.n, seed=cfg.seed, image_size=source_size,
                              kind_weights=cfg.kind_weights, texture=cfg.texture,
                              twins=cfg.twins)
    src = write_synthetic_url_source(Path(root) / f"_{dataset}_{version}_source", src_cfg,
                                     progress=progress)
    try:
        with serve_directory(src) as base:
            table = url_table_for(src, base)
            icfg = load_config(IngestConfig, None, [
                f"out={root}", f"dataset={dataset}", f"version={version}",
                f"samples_per_shard={samples_per_shard}", f"overwrite={str(overwrite).lower()}",
                f"progress={str(progress).lower()}", "source.kind=urls", f"source.path={table}",
                "source.extra_cols=[synthetic]", "source.json_cols=[synthetic]",
                "download.allow_private=true", f"download.image_size={cfg.image_size}",
                f"download.processes={processes}", f"download.threads={threads}",
                "filters.min_image_size=1"])
            with lock_version(root, dataset, version):
                return ingest_urls(icfg)
    finally:
        import shutil

        shutil.rmtree(src, ignore_errors=True)
