"""Configuration of the ingest stage (defaults here are the single source of truth).

Load with ``mamo.core.config.load_config(IngestConfig, "configs/ingest/<x>.yaml", ["a.b=c"])``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mamo.core.config import check

from .synthetic import SyntheticConfig

SourceKind = Literal["synthetic", "urls", "coco", "karpathy", "folder"]


@dataclass
class SourceConfig:
    kind: SourceKind = "synthetic"
    # urls: a table file or a folder of them; coco/karpathy: the captions JSON; folder: the folder
    path: str = ""
    input_format: Literal["auto", "parquet", "csv", "tsv", "jsonl"] = "auto"
    url_col: str = "url"
    caption_col: str = "caption"
    # extra input columns copied into KEY.json; those in json_cols are parsed from JSON text
    extra_cols: list[str] = field(default_factory=list)
    json_cols: list[str] = field(default_factory=list)
    # coco/karpathy: folder the JSON's file names are relative to ("" = next to the JSON)
    images_root: str = ""
    # karpathy: keep only these splits (empty = all), e.g. ["train", "restval"]
    splits: list[str] = field(default_factory=list)

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        if self.kind != "synthetic":
            check(self.path != "", f"{p}path", f"is required for source kind {self.kind!r}")
        check(self.url_col != "", f"{p}url_col", "must not be empty")
        check(self.caption_col != "", f"{p}caption_col", "must not be empty")
        for c in self.json_cols:
            check(c in self.extra_cols, f"{p}json_cols", f"{c!r} is not listed in extra_cols")


@dataclass
class DownloadConfig:
    """img2dataset settings (names follow img2dataset where they map 1:1)."""

    image_size: int = 256
    resize_mode: Literal["border", "keep_ratio", "keep_ratio_largest", "center_crop", "no"] = "border"
    encode_quality: int = 95
    processes: int = 2
    threads: int = 32
    retries: int = 1
    timeout: int = 10
    # multiprocessing (default, built in); pyspark and ray need their packages installed
    distributor: Literal["multiprocessing", "pyspark", "ray"] = "multiprocessing"
    allow_private: bool = False  # loopback/private/link-local hosts; only for tests and demos
    resolve_hosts: bool = True  # resolve host names to refuse private addresses up front
    user_agent_token: str = ""

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(8 <= self.image_size <= 4096, f"{p}image_size", "must be in [8, 4096]")
        check(1 <= self.encode_quality <= 100, f"{p}encode_quality", "must be in [1, 100]")
        check(self.processes >= 1, f"{p}processes", "must be >= 1")
        check(self.threads >= 1, f"{p}threads", "must be >= 1")
        check(self.retries >= 0, f"{p}retries", "must be >= 0")
        check(self.timeout >= 1, f"{p}timeout", "must be >= 1 second")


@dataclass
class FilterConfig:
    min_caption_chars: int = 1
    max_caption_chars: int = 1000
    min_image_size: int = 32  # smaller side of the original image, pixels
    max_image_area: float = 40_000_000.0  # original width*height; refuses decompression bombs
    max_aspect_ratio: float = 10.0
    dedup_urls: bool = True
    dedup_images: bool = True  # by sha256 of the original image bytes

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.min_caption_chars >= 1, f"{p}min_caption_chars", "must be >= 1 (captions are "
              "never empty)")
        check(self.max_caption_chars >= self.min_caption_chars, f"{p}max_caption_chars",
              "must be >= min_caption_chars")
        check(self.min_image_size >= 1, f"{p}min_image_size", "must be >= 1")
        check(self.max_image_area > 0, f"{p}max_image_area", "must be > 0")
        check(self.max_aspect_ratio >= 1, f"{p}max_aspect_ratio", "must be >= 1")


@dataclass
class IngestConfig:
    out: str = "data"  # root: versions go to <out>/<dataset>/<version>
    dataset: str = "synthetic"
    version: str = "v1"
    samples_per_shard: int = 1000  # also the download chunk size (one task per chunk)
    overwrite: bool = False  # replace a complete version (otherwise refused)
    progress: bool = True
    source: SourceConfig = field(default_factory=SourceConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.samples_per_shard >= 1, f"{p}samples_per_shard", "must be >= 1")
        from .version import NAME_RE

        check(bool(NAME_RE.match(self.dataset)), f"{p}dataset", "letters, digits, _ . - only")
        check(bool(NAME_RE.match(self.version)), f"{p}version", "letters, digits, _ . - only")
