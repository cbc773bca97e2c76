"""Tokenizer and the caption -> (input_ids, attention_mask, concept_labels) contract."""
import pytest
import torch
from tokenizers import Tokenizer

from concepts.encode import IGNORE_INDEX, encode_batch
from concepts.tokenizer import default_vocab_path, load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def span(caption: str, word: str, cid: int, nth: int = 0) -> list[int]:
    start = -1
    for _ in range(nth + 1):
        start = caption.index(word, start + 1)
    return [start, start + len(word), cid]


def test_special_ids_and_vocab(tok):
    assert tok.get_vocab_size() == 30522
    assert [tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]")] == [0, 101, 102, 103]


def test_matches_the_shipped_reference_tokenizer(tok):
    # tokenizer.json next to vocab.txt is the upstream (HF) serialisation of the same tokenizer
    ref = Tokenizer.from_file(str(default_vocab_path().parent / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    for text in ["Two dogs are running across a snowy field.", "Café naïve ÜNÏCÖDÉ 東京 snowboarders!!",
                 "a man's hat-trick, 3.5kg of e-mail", "🙂🙂 emoji only"]:
        assert tok.encode(text).ids == ref.encode(text).ids


def test_shapes_padding_and_specials(tok):
    caps = ["A red circle", "Two dogs are running across a snowy field"]
    out = encode_batch(caps, [[], []], tok, max_len=16)
    assert set(out) == {"input_ids", "attention_mask", "concept_labels"}
    for v in out.values():
        assert v.dtype == torch.int64 and v.shape == (2, 16)
    ids, mask = out["input_ids"], out["attention_mask"]
    n0 = int(mask[0].sum())
    assert n0 == 5  # [CLS] a red circle [SEP]
    assert ids[0, 0] == 101 and ids[0, n0 - 1] == 102 and (ids[0, n0:] == 0).all()
    assert (mask[0, n0:] == 0).all()
    assert (out["concept_labels"] == IGNORE_INDEX).all()


def test_multi_piece_word_all_and_first(tok):
    cap = "A snowboarder rides down"
    spans = [span(cap, "snowboarder", 5), span(cap, "rides", 7)]
    toks = tok.encode(cap, add_special_tokens=False).tokens
    assert toks[:4] == ["a", "snow", "##board", "##er"]
    allp = encode_batch([cap], [spans], tok, max_len=12)["concept_labels"][0].tolist()
    # position 0 is [CLS]; "a" is 1; snow ##board ##er are 2..4; rides is 5
    assert allp[:7] == [-100, -100, 5, 5, 5, 7, -100]
    first = encode_batch([cap], [spans], tok, max_len=12, label_pieces="first")["concept_labels"][0]
    assert first[:7].tolist() == [-100, -100, 5, -100, -100, 7, -100]


def test_truncation_keeps_sep_and_never_labels_specials(tok):
    cap = "dog " * 50
    spans = [span(cap, "dog", 3, nth=i) for i in range(50)]
    out = encode_batch([cap], [spans], tok, max_len=8)
    ids, labels, mask = out["input_ids"][0], out["concept_labels"][0], out["attention_mask"][0]
    assert mask.tolist() == [1] * 8
    assert ids[0] == 101 and ids[-1] == 102
    assert labels[0] == IGNORE_INDEX and labels[-1] == IGNORE_INDEX
    assert labels[1:-1].tolist() == [3] * 6


def test_offsets_index_the_raw_caption_with_accents_and_case(tok):
    cap = "Ünïcödé CAFÉ in Zürich"
    spans = [span(cap, "CAFÉ", 9), span(cap, "Zürich", 4)]
    out = encode_batch([cap], [spans], tok, max_len=16)
    enc = tok.encode(cap, add_special_tokens=False)
    labels = out["concept_labels"][0, 1 : len(enc.ids) + 1].tolist()
    for (s, e), lab in zip(enc.offsets, labels):
        word = cap[s:e]
        expected = 9 if s >= 8 and e <= 12 else 4 if s >= 16 else IGNORE_INDEX
        assert lab == expected, (word, lab)


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="span lists"):
        encode_batch(["a"], [], tok, 8)
    with pytest.raises(ValueError, match="label_pieces"):
        encode_batch(["a"], [[]], tok, 8, label_pieces="last")
    with pytest.raises(ValueError, match="max_len"):
        encode_batch(["a"], [[]], tok, 1)
    with pytest.raises(FileNotFoundError):
        load_tokenizer("/nonexistent/vocab.txt")


def test_empty_caption_and_custom_vocab(tok, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dog", "##s", "red"]) + "\n")
    small = load_tokenizer(str(vocab))
    out = encode_batch(["Red dogs", ""], [[[4, 8, 0]], []], small, max_len=6)
    assert out["input_ids"][0].tolist() == [2, 7, 5, 6, 3, 0]
    assert out["concept_labels"][0].tolist() == [-100, -100, 0, 0, -100, -100]
    assert out["input_ids"][1].tolist() == [2, 3, 0, 0, 0, 0]
