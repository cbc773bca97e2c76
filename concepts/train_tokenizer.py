"""Training a new WordPiece vocabulary on a corpus's captions (same normaliser/pre-tokeniser
as the default BERT uncased tokenizer, so ``load_tokenizer(path)`` reads the result)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer
from tqdm import tqdm

from concepts.annotate import shard_captions
from concepts.config import TokenizerTrainConfig
from concepts.extract import decode_caption
from concepts.tokenizer import SPECIAL_TOKENS
from ingest.shards import version_shards


def iter_version_captions(version_dir: str | Path, show_progress: bool = False) -> Iterator[str]:
    """Every decodable, non-empty caption of a dataset version, in manifest order."""
    shards = version_shards(version_dir)
    for tar_path in tqdm(shards, desc="read captions", unit="shard", disable=not show_progress):
        for _, raw in shard_captions(tar_path):
            text = decode_caption(raw)
            if text and text.strip():
                yield text


def train_wordpiece(captions: Iterable[str], out_dir: str | Path,
                    cfg: TokenizerTrainConfig | None = None) -> Path:
    """Train WordPiece on ``captions``; writes ``out_dir/vocab.txt`` and returns its path.

    Special tokens come first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4 (the encoder
    looks them up by name, so these ids differ harmlessly from bert-base-uncased's).
    """
    cfg = cfg or TokenizerTrainConfig()
    tok = Tokenizer(WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                               special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                               continuing_subword_prefix="##")
    tok.train_from_iterator(captions, trainer=trainer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(out_dir))
    path = out_dir / "vocab.txt"
    if not path.is_file():
        raise RuntimeError(f"tokenizers did not write {path}")
    return path
