"""Configuration of the ingest stage (defaults here are the single source of truth).

Load with ``mamo.core.config.load_config(IngestConfig, "configs/ingest/<x>.yaml", ["a.b=c"])``.
"""
from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from pydantic import Field

from mamo.core.config import check, section

from .synthetic import SyntheticConfig
from .version import NAME_RE

SourceKind = Literal["synthetic", "urls", "coco", "karpathy", "folder"]


@section
class SourceConfig:
    kind: SourceKind = "synthetic"
    # urls: a table file or a folder of them; coco/karpathy: the captions JSON; folder: the folder
    path: str = ""
    input_format: Literal["auto", "parquet", "csv", "tsv", "jsonl"] = "auto"
    url_col: Annotated[str, Field(min_length=1)] = "url"
    caption_col: Annotated[str, Field(min_length=1)] = "caption"
    # extra input columns copied into KEY.json; those in json_cols are parsed from JSON text
    extra_cols: list[str] = field(default_factory=list)
    json_cols: list[str] = field(default_factory=list)
    # coco/karpathy: folder the JSON's file names are relative to ("" = next to the JSON)
    images_root: str = ""
    # karpathy: keep only these splits (empty = all), e.g. ["train", "restval"]
    splits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind != "synthetic":
            check(self.path != "", "path", f"is required for source kind {self.kind!r}")
        for c in self.json_cols:
            check(c in self.extra_cols, "json_cols", f"{c!r} is not listed in extra_cols")


@section
class DownloadConfig:
    """img2dataset settings (names follow img2dataset where they map 1:1)."""

    image_size: Annotated[int, Field(ge=8, le=4096)] = 256
    resize_mode: Literal["border", "keep_ratio", "keep_ratio_largest", "center_crop", "no"] = "border"
    encode_quality: Annotated[int, Field(ge=1, le=100)] = 95
    processes: Annotated[int, Field(ge=1)] = 2
    threads: Annotated[int, Field(ge=1)] = 32
    retries: Annotated[int, Field(ge=0)] = 1
    timeout: Annotated[int, Field(ge=1)] = 10  # seconds
    # multiprocessing (default, built in); pyspark and ray need their packages installed
    distributor: Literal["multiprocessing", "pyspark", "ray"] = "multiprocessing"
    allow_private: bool = False  # loopback/private/link-local hosts; only for tests and demos
    # CIDRs allowed although private (e.g. ["127.0.0.1/32"]); allow_private=true allows all
    allow_networks: list[str] = field(default_factory=list)
    resolve_hosts: bool = True  # resolve host names to refuse private addresses up front
    # ingest.fetch inside img2dataset's workers: per-hop address checks, robots.txt, opt-outs,
    # per-host limits, whole-request timeout (false: img2dataset's own urllib fetch, none of these)
    safe_fetch: bool = True
    max_redirects: Annotated[int, Field(ge=0, le=30)] = 5
    # robots.txt group and X-Robots-Tag scope we match; also the User-Agent's product name
    user_agent_token: Annotated[str, Field(pattern=r"^[A-Za-z_-]+$")] = "mamo-ingest"
    contact_url: str = "https://github.com/mamo-project/mamo"  # in the User-Agent
    robots_txt: bool = True
    # X-Robots-Tag directives that opt an image out (-> filtered / opt_out)
    opt_out_directives: list[str] = field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex", "noml"])
    max_per_host: Annotated[int, Field(ge=1)] = 16  # requests in flight per host
    min_host_interval: Annotated[float, Field(ge=0)] = 0.0  # seconds between requests to a host
    # JSON lines, one per request start (wall time, host id), appended by every worker when
    # min_host_interval > 0: an audit of the spacing a run kept (empty = none)
    request_log: str = ""
    rate_limit_retries: Annotated[int, Field(ge=0, le=10)] = 2  # 429/503 retries, then rate_limited
    max_retry_after: Annotated[float, Field(ge=0)] = 30.0  # longer Retry-After: give up at once
    max_bytes: Annotated[int, Field(ge=1024)] = 50 * 1024 * 1024  # body cap -> response_too_large

    def __post_init__(self) -> None:
        from .safety import parse_networks

        try:
            parse_networks(self.allow_networks)
        except ValueError as e:
            check(False, "allow_networks", str(e))


@section
class FilterConfig:
    min_caption_chars: Annotated[int, Field(ge=1)] = 1  # captions are never empty
    max_caption_chars: int = 1000
    min_image_size: Annotated[int, Field(ge=1)] = 32  # smaller side of the original image, pixels
    # original width*height; refuses decompression bombs
    max_image_area: Annotated[float, Field(gt=0)] = 40_000_000.0
    max_aspect_ratio: Annotated[float, Field(ge=1)] = 10.0
    dedup_urls: bool = True
    dedup_images: bool = True  # by sha256 of the original image bytes
    # perceptual (DCT) hash: a Hamming distance <= this to an earlier image -> near_duplicate
    # (within the version and against the dataset's earlier versions); -1 = off
    near_duplicate_distance: Annotated[int, Field(ge=-1, le=32)] = 6
    # dataset version dirs (e.g. held-out eval sets): samples near-duplicate of their images
    # (or, with exclude_identical_captions, with an identical caption) -> filtered / contaminated
    exclude_versions: list[str] = field(default_factory=list)
    exclude_identical_captions: bool = False

    def __post_init__(self) -> None:
        check(self.max_caption_chars >= self.min_caption_chars, "max_caption_chars",
              "must be >= min_caption_chars")


@section
class IngestConfig:
    out: str = "data"  # root: versions go to <out>/<dataset>/<version>
    dataset: Annotated[str, Field(pattern=NAME_RE.pattern)] = "synthetic"  # letters, digits, _ . -
    version: Annotated[str, Field(pattern=NAME_RE.pattern)] = "v1"
    # also the download chunk size (one task per chunk)
    samples_per_shard: Annotated[int, Field(ge=1)] = 1000
    overwrite: bool = False  # replace a complete version (otherwise refused)
    # an earlier URL version dir: ingest only its transiently failed rows (ingest/retry.py)
    retry_failed: str = ""
    progress: bool = True
    source: SourceConfig = field(default_factory=SourceConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
