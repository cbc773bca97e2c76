"""Ingest stage: image-text sources -> dataset versions (WebDataset shards, DALI indexes,
failures.parquet, manifest.json). See docs/ingest.md.

Modules: ``synthetic`` (the embedded default data and its ground truth), ``synthetic_version``
(writing it as a version or as a URL source), ``download`` (URL tables through img2dataset),
``local_sources`` (COCO, Karpathy, folder), ``pipeline.run_ingest`` (any source from an
``IngestConfig``), ``manifest`` (``load_manifest``: the one manifest reader), ``shards`` (the
shard format: the one reader and writer of WebDataset tars, the DALI index), ``accounting``,
``verify``, ``safety``, ``http_server``; ``fetch`` (the safe, polite fetch inside
img2dataset's workers), ``near_dup`` (perceptual hash, near-duplicates, decontamination),
``retry`` (retry of a version's transiently failed rows).
"""
