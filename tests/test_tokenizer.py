"""Word spans come from CLIP's own cleaning and splitting; ids match open_clip's tokenizer."""

import open_clip
import pytest
import torch

from ntlb import NtlbError
from ntlb.models import ClipTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return ClipTokenizer(context_length=77)


def test_ids_match_open_clip(tokenizer):
    texts = ["a photo of a cat", "A Small, red-hot STAR!", "unbelievably colourful"]
    assert torch.equal(tokenizer(texts).ids, open_clip.tokenize(texts))


def test_word_spans(tokenizer):
    tokens = tokenizer("A small, red-hot star.")
    words = tokens.words[0]
    assert [w.text for w in words] == ["a", "small", ",", "red", "-", "hot", "star", "."]
    assert words[0].start == 1 and words[-1].end == int(tokens.eot[0])
    for left, right in zip(words, words[1:]):
        assert left.end == right.start


def test_multi_token_word_span(tokenizer):
    tokens = tokenizer("xylophonists blue")
    first, second = tokens.words[0]
    assert first.text == "xylophonists" and (first.start, first.end) == (1, 5)
    assert second.text == "blue" and second.end - second.start == 1


def test_from_ids_gives_the_same_words(tokenizer):
    tokens = tokenizer(["a photo of a dog", "zebra"])
    again = tokenizer.from_ids(tokens.ids)
    assert again.words == tokens.words and torch.equal(again.eot, tokens.eot)


def test_text_longer_than_context_is_one_line_error():
    with pytest.raises(NtlbError, match=r"has 12 tokens but the model's context is 8: shorten it") as err:
        ClipTokenizer(context_length=8)("one two three four five six seven eight nine ten")
    assert "\n" not in str(err.value)


def test_empty_text_list(tokenizer):
    with pytest.raises(NtlbError, match="no texts given"):
        tokenizer([])


def test_ids_without_eot(tokenizer):
    with pytest.raises(NtlbError, match="no end-of-text token"):
        tokenizer.from_ids(torch.tensor([[49406, 320, 1125]]))
