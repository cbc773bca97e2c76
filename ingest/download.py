"""The download path: URL table -> img2dataset -> our dataset version layout.

Three steps, each resumable, all state under ``<version_dir>/_work/`` (removed at the end):

1. ``plan_download``: read the table, refuse bad rows before any network access (malformed
   or non-http(s) URL, private address, missing/invalid/empty/too long caption, duplicate URL),
   normalise captions, and split the rows to fetch into chunks ``_work/chunks_in/NNNNN.parquet``
   (one chunk = one img2dataset shard = one of our shards). Reused on resume.
2. ``download_chunks`` (all chunks, one img2dataset call) or ``download_chunk`` (one chunk, for
   one Prefect task each): img2dataset with ``incremental_mode="incremental"``, so finished
   shards are never downloaded again.
3. ``finalize``: in chunk order, check every downloaded image decodes (RGB, re-encoded if
   not), drop duplicates by the sha256 of the original bytes (first row wins), drop images
   near-duplicate of one in ``filters.exclude_versions`` (``contaminated``) or of an earlier
   one in this version or the dataset's other versions (``near_duplicate``), write our shard
   + DALI index, and append the chunk's outcomes to ``_work/journal.jsonl``; on resume,
   journaled chunks are skipped. Then ``failures.parquet`` and the manifest (written last).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mamo.core.config import to_dict
from mamo.core.files import atomic_path, write_json, write_text

from .accounting import Accounting
from .captions import decode_caption, normalize_caption
from .config import IngestConfig
from .fetch import FILTERED_REASONS
from .img2dataset_runner import img2dataset_params, run_img2dataset
from .manifest import build_manifest, write_manifest
from .safety import UrlRefused, check_url
from .shards import ShardInfo, ShardWriter, iter_members, sha256_file
from .tables import input_files, read_url_table
from .version import prepare_version_dir, sample_meta

WORK = "_work"


class ChunkNotDownloaded(RuntimeError):
    pass


@dataclass
class Plan:
    n_input: int
    n_chunks: int
    table_sha256: str
    fingerprint: str  # hash of everything that determines the plan
    retry_of: dict[str, Any] | None = None  # ingest/retry.py: the version whose rows these are


def _table_sha256(path: str | Path, input_format: str) -> str:
    h = hashlib.sha256()
    for f, fmt in input_files(path, input_format):
        h.update(f"{f.name}\0{fmt}\0".encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _plan_fingerprint(cfg: IngestConfig, table_sha: str) -> str:
    s, f = cfg.source, cfg.filters
    key = {"table": table_sha, "url_col": s.url_col, "caption_col": s.caption_col,
           "extra": s.extra_cols, "json": s.json_cols, "chunk": cfg.samples_per_shard,
           "caps": [f.min_caption_chars, f.max_caption_chars], "dedup_urls": f.dedup_urls,
           "allow_private": cfg.download.allow_private,
           "allow_networks": cfg.download.allow_networks, "retry_failed": cfg.retry_failed}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def work_dir(vdir: Path) -> Path:
    return Path(vdir) / WORK


def _outcome_rows(acc: Accounting) -> list[list[Any]]:
    return [[o.row, o.status, o.reason, o.detail, o.url, o.caption]
            for o in sorted(acc.outcomes.values(), key=lambda o: o.row)]


def _safe_text(s: str) -> str:
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def plan_download(cfg: IngestConfig) -> tuple[Path, Plan]:
    """Step 1 (idempotent): returns the version dir and the plan."""
    vdir = prepare_version_dir(cfg.out, cfg.dataset, cfg.version, cfg.overwrite,
                               keep_partial=True)
    wdir = work_dir(vdir)
    table_sha = _table_sha256(cfg.source.path, cfg.source.input_format)
    fp = _plan_fingerprint(cfg, table_sha)
    plan_path = wdir / "plan.json"
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old.get("fingerprint") == fp:
            return vdir, Plan(**old)
        # a different table or settings under the same unfinished version: start it over
        shutil.rmtree(wdir)
        shutil.rmtree(vdir / "shards", ignore_errors=True)
        (vdir / "shards").mkdir()
    (wdir / "chunks_in").mkdir(parents=True, exist_ok=True)

    import pyarrow as pa
    import pyarrow.parquet as pq

    src, flt = cfg.source, cfg.filters
    rows = read_url_table(src.path, src.input_format, src.url_col, src.caption_col,
                          src.extra_cols)
    retry_of = None
    if cfg.retry_failed:
        from dataclasses import replace

        from .retry import retry_source

        rs = retry_source(cfg.retry_failed)
        if rs["sha256"] != table_sha:
            from mamo.core.cli import UserError

            raise UserError(f"source.path={src.path}: the table changed since "
                            f"{cfg.retry_failed} was ingested (sha256 differs)")
        rows = [replace(rows[t], row=i, extras={**rows[t].extras, "source_row": t})
                for i, t in enumerate(rs["table_rows"])]
        retry_of = {**rs["retry_of"], "rows": rs["old_rows"], "table_rows": rs["table_rows"]}
    acc = Accounting(n_input=len(rows))
    seen_urls: set[str] = set()
    fetch: list[dict[str, Any]] = []
    for r in rows:
        url_text = r.url if isinstance(r.url, str) else ("" if r.url is None else str(r.url))
        if r.problem:
            acc.record(r.row, "failed", r.problem, r.detail)
            continue
        try:
            url = check_url(url_text, cfg.download.allow_private, cfg.download.resolve_hosts,
                            cfg.download.allow_networks)
        except UrlRefused as e:
            acc.record(r.row, "failed", e.reason, str(e), url=_safe_text(url_text))
            continue
        raw, problem = decode_caption(r.caption)
        if problem:
            acc.record(r.row, "filtered", problem, url=url)
            continue
        caption = normalize_caption(raw)
        if len(caption) < flt.min_caption_chars:
            acc.record(r.row, "filtered", "empty_caption" if not caption else "caption_too_short",
                       url=url, caption=caption)
            continue
        if len(caption) > flt.max_caption_chars:
            acc.record(r.row, "filtered", "caption_too_long", f"{len(caption)} characters",
                       url=url, caption=caption)
            continue
        extras = {"source_row": r.extras["source_row"]} if retry_of else {}
        bad_extra = ""
        for c in src.extra_cols:
            v = r.extras.get(c)
            if c in src.json_cols and isinstance(v, str):
                try:
                    v = json.loads(v)
                except json.JSONDecodeError as e:
                    bad_extra = f"column {c!r}: invalid JSON: {e}"
                    break
            extras[c] = v
        if bad_extra:
            acc.record(r.row, "failed", "malformed_row", bad_extra, url=url, caption=caption)
            continue
        if flt.dedup_urls:
            if url in seen_urls:
                acc.record(r.row, "duplicate", "duplicate_url", url=url, caption=caption)
                continue
            seen_urls.add(url)
        fetch.append({"row_id": r.row, "url": url, "caption": caption,
                      "extras_json": json.dumps(extras, ensure_ascii=False, default=str)})

    size = cfg.samples_per_shard
    n_chunks = (len(fetch) + size - 1) // size
    for i in range(n_chunks):
        part = fetch[i * size:(i + 1) * size]
        table = pa.table({k: [p[k] for p in part] for k in ("row_id", "url", "caption",
                                                            "extras_json")})
        with atomic_path(wdir / "chunks_in" / f"{i:05d}.parquet") as tmp:
            pq.write_table(table, tmp)
    # rows refused before download are journaled as pseudo-chunk -1
    # (ASCII JSON: a refused row's text may hold surrogate escapes of invalid UTF-8)
    write_text(wdir / "prefilter.json", json.dumps(_outcome_rows(acc)))
    plan = Plan(n_input=len(rows), n_chunks=n_chunks, table_sha256=table_sha, fingerprint=fp,
                retry_of=retry_of)
    # the plan exists only once the chunks are all written
    write_json(plan_path, asdict(plan), indent=None)
    return vdir, plan


def fetch_policy(cfg: IngestConfig, state_dir: Path | str = "") -> dict[str, Any]:
    """The ``ingest.fetch.FetchPolicy`` of a config, as a dict (it travels in the params)."""
    from .fetch import default_user_agent

    d = cfg.download
    return {"allow_private": d.allow_private, "allow_networks": list(d.allow_networks),
            "max_redirects": d.max_redirects, "timeout": float(d.timeout),
            "ua_token": d.user_agent_token,
            "user_agent": default_user_agent(d.user_agent_token, d.contact_url),
            "opt_out_directives": [x.lower() for x in d.opt_out_directives],
            "robots": d.robots_txt, "max_per_host": d.max_per_host,
            "min_interval": d.min_host_interval, "rate_limit_retries": d.rate_limit_retries,
            "max_retry_after": d.max_retry_after, "max_bytes": d.max_bytes,
            "state_dir": str(state_dir), "request_log": d.request_log}


def _i2d_params(cfg: IngestConfig, url_list: Path, out: Path, wdir: Path) -> dict[str, Any]:
    d, f = cfg.download, cfg.filters
    params = img2dataset_params(url_list, out, d.image_size, d.resize_mode, d.encode_quality,
                                d.processes, d.threads, d.retries, d.timeout, d.distributor,
                                cfg.samples_per_shard, f.min_image_size, f.max_image_area,
                                f.max_aspect_ratio, d.user_agent_token)
    if d.safe_fetch:
        # robots cache and host locks: one per version, shared by all chunks of the run
        params["fetch_policy"] = fetch_policy(cfg, wdir / "web")
    return params


def chunk_outputs(vdir: Path, chunk: int) -> tuple[Path, Path] | None:
    """img2dataset's (tar, parquet) for a chunk, from either download layout, if finished."""
    wdir = work_dir(vdir)
    for base, shard in ((wdir / "dl" / "all", chunk), (wdir / "dl" / f"{chunk:05d}", 0)):
        stats = base / f"{shard:05d}_stats.json"
        tar, pq_ = base / f"{shard:05d}.tar", base / f"{shard:05d}.parquet"
        if stats.is_file() and tar.is_file() and pq_.is_file():
            return tar, pq_
    return None


def download_chunks(cfg: IngestConfig, vdir: Path, plan: Plan) -> None:
    """Step 2, all chunks in one img2dataset call (its shard i is our chunk i)."""
    if plan.n_chunks == 0 or all(chunk_outputs(vdir, i) for i in range(plan.n_chunks)):
        return
    wdir = work_dir(vdir)
    run_img2dataset(_i2d_params(cfg, wdir / "chunks_in", wdir / "dl" / "all", wdir))


def download_chunk(cfg: IngestConfig, vdir: Path, chunk: int) -> None:
    """Step 2 for one chunk (what one Prefect task does)."""
    if chunk_outputs(vdir, chunk):
        return
    wdir = work_dir(vdir)
    run_img2dataset(_i2d_params(cfg, wdir / "chunks_in" / f"{chunk:05d}.parquet",
                                wdir / "dl" / f"{chunk:05d}", wdir))


def _download_reason(msg: str) -> str:
    tagged = re.match(r"\[([a-z_]+)\] ", msg)
    if tagged:
        return tagged.group(1)
    m = msg.lower()
    if "x-robots-tag" in m:  # img2dataset's own check (download.safe_fetch=false)
        return "opt_out"
    if m.startswith("http error"):
        return "http_error"
    if "timed out" in m or "timeout" in m:
        return "timeout"
    if "refused" in m or "urlopen error" in m or "connection" in m:
        return "connection_error"
    return "download_error"


RESIZE_FILTERS = {"image too small": "image_too_small", "image area too large": "image_too_large",
                  "aspect ratio too large": "aspect_ratio_too_large"}


def _check_image(data: bytes, quality: int) -> tuple[bytes, int, int, Any]:
    """Decode fully (catches truncation); re-encode as RGB JPEG unless it already is one.
    Also returns the decoded RGB image (for the near-duplicate hash)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format
        img.load()
        if img.mode == "RGB" and fmt == "JPEG":
            return data, img.width, img.height, img.copy()
        rgb = img.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), rgb.width, rgb.height, rgb


def _prepare_image(data: bytes, quality: int, want_fingerprint: bool
                   ) -> tuple[bytes, int, int, tuple[int, bytes] | None] | Exception:
    """``_check_image`` and (if wanted) the near-duplicate fingerprint of one downloaded
    image, or the decoder's exception (a bad image is an outcome, not a crash)."""
    from .near_dup import fingerprint

    try:
        jpg, w, h, decoded = _check_image(data, quality)
    except Exception as e:  # noqa: BLE001 - any decoder error means a bad image
        return e
    return jpg, w, h, (fingerprint(decoded) if want_fingerprint else None)


def _ordered_map(fn: Any, items: list[Any], workers: int, window: int = 64, batch: int = 16) -> Any:
    """``map(fn, items)`` in order, ``workers`` threads ahead of the consumer, at most
    ``window`` results held. Pillow's decode and resize release the GIL, so the decode of
    the next images overlaps the tar reading and writing of this one; a bounded window keeps
    a chunk of large images from being held decoded all at once. Items go to the threads
    ``batch`` at a time: one future per image cost ~50 us of executor overhead each, as much
    as decoding a small image."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    if workers <= 1:
        yield from map(fn, items)
        return
    it = iter(items)

    def run(xs: list[Any]) -> list[Any]:
        return [fn(x) for x in xs]

    def submit() -> Any:
        xs = list(islice(it, batch))
        return ex.submit(run, xs) if xs else None

    with ThreadPoolExecutor(max_workers=workers) as ex:
        pending = deque(f for f in (submit() for _ in range(max(1, window // batch))) if f)
        while pending:
            yield from pending.popleft().result()
            if (f := submit()) is not None:
                pending.append(f)


def _read_journal(path: Path) -> list[dict[str, Any]]:
    out = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: that chunk is redone
    return out


def _append_journal(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class NearDupState:
    """What a sample is compared with (ingest/near_dup.py): ``seen`` holds this version's
    written images and the dataset's earlier versions'; ``exclude`` the images (and captions)
    of ``filters.exclude_versions``."""

    seen: Any  # near_dup.HashIndex
    exclude: Any | None = None
    exclude_captions: dict[str, str] | None = None


def near_dup_state(cfg: IngestConfig, vdir: Path,
                   journal: list[dict[str, Any]] = ()) -> NearDupState | None:
    """None when near-duplicates are off and nothing is excluded."""
    from .near_dup import HashIndex, build_index, earlier_versions

    f = cfg.filters
    if f.near_duplicate_distance < 0 and not f.exclude_versions:
        return None
    excl = [Path(v) for v in f.exclude_versions]
    for v in excl:
        if not (v / "manifest.json").is_file():
            from mamo.core.cli import UserError

            raise UserError(f"filters.exclude_versions: {v} is not a dataset version "
                            "(no manifest.json)")
    exclude, caps = (build_index(excl, max(f.near_duplicate_distance, 6)) if excl
                     else (None, None))
    if f.near_duplicate_distance >= 0:
        excluded = {p.resolve() for p in excl}
        planned = (work_dir(vdir) / "plan.json").stat().st_mtime
        seen, _ = build_index([p for p in earlier_versions(vdir, planned)
                               if p.resolve() not in excluded], f.near_duplicate_distance)
    else:
        seen = HashIndex(-1)
    import base64

    for e in journal:
        for key, h, t in e.get("phashes", []):
            seen.add(int(h, 16), base64.b64decode(t), key)
    return NearDupState(seen, exclude, caps if f.exclude_identical_captions else None)


def finalize_chunk(cfg: IngestConfig, vdir: Path, chunk: int, shard_index: int,
                   seen_hashes: set[str], near: NearDupState | None = None) -> dict[str, Any]:
    """Post-process one downloaded chunk into our shard ``shard_index`` (if any sample
    survives); returns the journal entry. ``seen_hashes`` (and ``near``) are updated."""
    from .near_dup import encode_thumb, hash_hex

    if near is None:
        near = near_dup_state(cfg, vdir)  # (None again when the checks are off)

    import pyarrow.parquet as pq

    found = chunk_outputs(vdir, chunk)
    if found is None:
        raise ChunkNotDownloaded(f"chunk {chunk} of {vdir} has not finished downloading")
    tar_path, pq_path = found
    plan_rows = pq.read_table(work_dir(vdir) / "chunks_in" / f"{chunk:05d}.parquet").to_pylist()
    info = {r["row_id"]: r for r in plan_rows}
    status_rows = {int(r["row_id"]): r for r in pq.read_table(pq_path).to_pylist()
                   if r.get("row_id") is not None}
    images = {m.key: m.data for m in iter_members(tar_path, read=("jpg",)) if m.ext == "jpg"}

    acc = Accounting(n_input=0)
    writer: ShardWriter | None = None
    hashes: list[str] = []
    phashes: list[list[str]] = []
    # decoded (and fingerprinted) ahead in threads, consumed in row order below
    to_decode = [images[st["key"]] for row_id in sorted(info)
                 if (st := status_rows.get(row_id)) is not None and st.get("status") == "success"
                 and images.get(st.get("key") or "") is not None]
    prepared = _ordered_map(lambda d: _prepare_image(d, cfg.download.encode_quality, near is not None),
                            to_decode, workers=min(4, os.cpu_count() or 1))
    for row_id in sorted(info):
        r = info[row_id]
        url, caption = r["url"], r["caption"]
        st = status_rows.get(row_id)
        if st is None:
            acc.record(row_id, "failed", "missing_from_downloader", url=url, caption=caption)
            continue
        status, err = st.get("status"), st.get("error_message") or ""
        if status == "failed_to_download":
            reason = _download_reason(err)
            acc.record(row_id, "filtered" if reason in FILTERED_REASONS else "failed", reason,
                       err, url=url, caption=caption)
            continue
        if status == "failed_to_resize":
            if err in RESIZE_FILTERS:
                acc.record(row_id, "filtered", RESIZE_FILTERS[err], err, url=url, caption=caption)
            else:
                acc.record(row_id, "failed", "decode_error", err, url=url, caption=caption)
            continue
        data = images.get(st.get("key") or "")
        if status != "success" or data is None:
            acc.record(row_id, "failed", "missing_from_downloader", f"status {status!r}",
                       url=url, caption=caption)
            continue
        ready = next(prepared)
        if isinstance(ready, Exception):
            acc.record(row_id, "failed", "decode_error", f"{type(ready).__name__}: {ready}", url=url,
                       caption=caption)
            continue
        jpg, w, h, fp = ready
        src_hash = st.get("sha256") or hashlib.sha256(data).hexdigest()
        if cfg.filters.dedup_images and src_hash in seen_hashes:
            acc.record(row_id, "duplicate", "duplicate_image", src_hash, url=url, caption=caption)
            continue
        key = f"r{row_id:09d}"
        near_meta: dict[str, str] = {}
        if near is not None:
            assert fp is not None
            ph, thumb = fp
            hit = near.exclude.find(ph, thumb) if near.exclude is not None else None
            if hit is not None:
                acc.record(row_id, "filtered", "contaminated", f"image near-duplicate of "
                           f"{hit[0]} (distance {hit[1]})", url=url, caption=caption)
                continue
            if near.exclude_captions is not None and caption in near.exclude_captions:
                acc.record(row_id, "filtered", "contaminated", "caption identical to "
                           f"{near.exclude_captions[caption]}", url=url, caption=caption)
                continue
            hit = near.seen.find(ph, thumb)
            if hit is not None:
                acc.record(row_id, "duplicate", "near_duplicate", f"first copy {hit[0]} "
                           f"(distance {hit[1]})", url=url, caption=caption)
                continue
            near_meta = {"phash": hash_hex(ph), "thumb": encode_thumb(thumb)}
            near.seen.add(ph, thumb, key)
            phashes.append([key, near_meta["phash"], near_meta["thumb"]])
        seen_hashes.add(src_hash)
        hashes.append(src_hash)
        extras = json.loads(r["extras_json"]) if r.get("extras_json") else {}
        meta = sample_meta(key, jpg, caption, w, h, st.get("original_width") or w,
                           st.get("original_height") or h, url=url, source_sha256=src_hash,
                           row=row_id, **near_meta, **extras)
        if writer is None:
            writer = ShardWriter(vdir, shard_index)
        writer.add(key, jpg, caption, meta)
        acc.written(row_id)
    shard: ShardInfo | None = writer.close() if writer is not None else None
    return {"chunk": chunk, "shard": shard.as_dict() if shard else None,
            "outcomes": _outcome_rows(acc), "hashes": hashes, "phashes": phashes}


def finalize(cfg: IngestConfig, vdir: Path, plan: Plan) -> dict[str, Any]:
    """Step 3: post-process every chunk in order (resuming from the journal), then write
    failures.parquet and the manifest, and remove ``_work``."""
    wdir = work_dir(vdir)
    journal_path = wdir / "journal.jsonl"
    done = _read_journal(journal_path)
    # keep only a consistent prefix: entry i must be chunk i and its shard must be on disk
    valid: list[dict[str, Any]] = []
    for i, e in enumerate(done):
        sh = e.get("shard")
        if e.get("chunk") != i or (sh and not (vdir / sh["tar"]).is_file()):
            break
        valid.append(e)
    if len(valid) != len(done):
        write_text(journal_path, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in valid))
    seen: set[str] = {h for e in valid for h in e["hashes"]}
    n_shards = sum(1 for e in valid if e["shard"])
    near = near_dup_state(cfg, vdir, valid) if len(valid) < plan.n_chunks else None
    for chunk in tqdm(range(len(valid), plan.n_chunks), desc="post-process", unit="chunk",
                      disable=not cfg.progress):
        entry = finalize_chunk(cfg, vdir, chunk, n_shards, seen, near)
        if entry["shard"]:
            n_shards += 1
        _append_journal(journal_path, entry)
        valid.append(entry)

    acc = Accounting(n_input=plan.n_input)
    pre = json.loads((wdir / "prefilter.json").read_text(encoding="utf-8"))
    for row, status, reason, detail, url, caption in pre + [o for e in valid
                                                             for o in e["outcomes"]]:
        acc.record(row, status, reason, detail, url, caption)
    shards = [e["shard"] for e in valid if e["shard"]]
    from .accounting import write_failures

    acc.check_complete()
    write_failures(vdir / "failures.parquet", acc.failures())
    source = {"kind": "urls", "path": str(Path(cfg.source.path).resolve()),
              "sha256": plan.table_sha256, "rows": plan.n_input,
              "url_col": cfg.source.url_col, "caption_col": cfg.source.caption_col}
    params = {"download": to_dict(cfg.download), "filters": to_dict(cfg.filters),
              "samples_per_shard": cfg.samples_per_shard}
    extra: dict[str, Any] = {"reasons": acc.reasons()}
    if plan.retry_of:
        extra["retry_of"] = plan.retry_of
    manifest = build_manifest(cfg.dataset, cfg.version, source, params, acc.counts(), shards,
                              extra=extra)
    write_manifest(vdir, manifest)
    shutil.rmtree(wdir, ignore_errors=True)
    return manifest


def ingest_urls(cfg: IngestConfig) -> dict[str, Any]:
    """The whole download path in one call; rerun after a crash to resume."""
    vdir, plan = plan_download(cfg)
    download_chunks(cfg, vdir, plan)
    return finalize(cfg, vdir, plan)


__all__ = ["plan_download", "download_chunks", "download_chunk", "finalize", "ingest_urls",
           "chunk_outputs", "Plan", "ChunkNotDownloaded"]
