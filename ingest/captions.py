"""Caption normalisation: NFC, whitespace collapsed, stripped; invalid UTF-8 is detected."""
from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")
# invalid UTF-8 read with errors="surrogateescape" shows up as lone surrogates
_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize_caption(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def decode_caption(raw: object) -> tuple[str | None, str]:
    """(caption, problem): problem is "" or a filter reason ("invalid_utf8", "missing_caption")."""
    if raw is None or (isinstance(raw, float) and raw != raw):  # None or NaN
        return None, "missing_caption"
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return None, "invalid_utf8"
    if not isinstance(raw, str):
        raw = str(raw)
    if _SURROGATE.search(raw):
        return None, "invalid_utf8"
    return raw, ""
