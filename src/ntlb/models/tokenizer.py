"""CLIP's byte-pair tokenizer with exact word spans (SPEC section 3).

Words are the pieces that CLIP's own cleaning and splitting produce ("a red-hot star." -> a, red, -, hot,
star, .); each piece's last BPE token ends in "</w>", so the spans are recovered from the ids alone and are
the same whether the text came in as a string or as token ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from open_clip.tokenizer import SimpleTokenizer
from torch import Tensor

from ..errors import NtlbError

CLIP_VOCABULARY = 49408


@dataclass(frozen=True)
class Word:
    """A word and its token positions [start, end) in the tokenised text."""

    text: str
    start: int
    end: int


@dataclass
class TokenizedTexts:
    """Token ids (T, L), EOT positions (T,), token strings and word spans for each text."""

    ids: Tensor
    eot: Tensor
    tokens: list[list[str]]
    words: list[list[Word]]
    fixed_length: bool = False  # the tower sees every position (no causal mask, last-token pooling): never cut

    def select(self, index: list[int]) -> TokenizedTexts:
        """The texts at `index`, in that order."""
        rows = torch.as_tensor(index, dtype=torch.long)
        return TokenizedTexts(self.ids[rows], self.eot[rows], [self.tokens[i] for i in index],
                              [self.words[i] for i in index], self.fixed_length)

    def truncated(self) -> TokenizedTexts:
        """The same texts cut to max(EOT)+1 positions: exact under the causal mask (SPEC 1, speed-up 4); unchanged
        for towers that see every position (SigLIP, MobileCLIP-S, CoCa)."""
        if self.fixed_length:
            return self
        length = int(self.eot.max()) + 1
        return TokenizedTexts(self.ids[:, :length], self.eot, self.tokens, self.words)

    def __len__(self) -> int:
        return self.ids.shape[0]


def padded_ids(texts: str | list[str], context_length: int, pad_id: int,
               encode: Callable[[str], list[int]], allow_empty: bool = False) -> Tensor:
    """Ids (T, context_length) of one text or a list of texts, padded with `pad_id`; one-line errors for no texts,
    an empty text (unless `allow_empty`: a text whose only word was deleted, see `without_words`) and a text longer
    than the context (every tokenizer of ntlb checks its input here)."""
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise NtlbError("no texts given: pass at least one text")
    ids = torch.full((len(texts), context_length), pad_id, dtype=torch.long)
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not (text.strip() or allow_empty):
            raise NtlbError(f"text {row + 1} of {len(texts)} is empty ({text!r}): give every text some words")
        encoded = encode(text)
        if len(encoded) > context_length:
            short = text if len(text) <= 40 else text[:37] + "..."
            raise NtlbError(f"text {short!r} has {len(encoded)} tokens but the model's context is {context_length}: "
                            "shorten it")
        ids[row, : len(encoded)] = torch.tensor(encoded)
    return ids


def first_end(ids: Tensor, end_id: int) -> Tensor:
    """The position of each row's first end-of-text token (T,); a one-line error for a row without one."""
    is_end = ids == end_id
    if not bool(is_end.any(dim=1).all()):
        raise NtlbError("a row of token ids has no end-of-text token: tokenise with the model's tokenizer")
    return is_end.int().argmax(dim=1)


class ClipTokenizer:
    """Tokenises to fixed-length id tensors and gives token strings and word spans."""

    def __init__(self, context_length: int = 77, bpe: SimpleTokenizer | None = None, fixed_length: bool = False):
        self.bpe = bpe if bpe is not None else SimpleTokenizer(context_length=context_length)
        self.context_length = context_length
        self.fixed_length = fixed_length
        self.sot_id = self.bpe.sot_token_id
        self.eot_id = self.bpe.eot_token_id
        self.vocab_size = self.bpe.vocab_size

    def encode_one(self, text: str) -> list[int]:
        """Ids of one text with SOT and EOT."""
        return [self.sot_id, *self.bpe.encode(text), self.eot_id]

    def __call__(self, texts: str | list[str], allow_empty: bool = False) -> TokenizedTexts:
        """Tokenise one text or a list of texts (empty ones too with `allow_empty`)."""
        return self.from_ids(padded_ids(texts, self.context_length, 0, self.encode_one, allow_empty))

    def from_ids(self, ids: Tensor) -> TokenizedTexts:
        """Token strings, EOT positions and word spans of given token ids (T, L)."""
        if ids.ndim == 1:
            ids = ids.unsqueeze(0)
        ids = ids.long().cpu()
        if ids.shape[1] > self.context_length:
            raise NtlbError(
                f"token ids have length {ids.shape[1]} but the model's context is {self.context_length}: "
                "tokenise with the model's tokenizer"
            )
        eot = first_end(ids, self.eot_id)
        tokens, words = [], []
        for row, end in zip(ids.tolist(), eot.tolist()):
            pieces = [self.bpe.decoder.get(i, "<unk>") for i in row[: end + 1]]
            tokens.append(pieces)
            words.append(self._word_spans(pieces, end))
        return TokenizedTexts(ids, eot, tokens, words, self.fixed_length)

    def _word_spans(self, pieces: list[str], eot: int) -> list[Word]:
        spans, start = [], 1
        for position in range(1, eot):
            if pieces[position].endswith("</w>") or position == eot - 1:
                raw = "".join(pieces[start : position + 1]).replace("</w>", "")
                text = bytearray(self.bpe.byte_decoder.get(c, ord("?")) for c in raw).decode(
                    "utf-8", errors="replace"
                )
                spans.append(Word(text, start, position + 1))
                start = position + 1
        return spans


def without_words(texts: Sequence[str], words: Sequence[Sequence[str]], tokenizer) -> tuple[list[str], Tensor]:
    """Each text with each of its chosen words deleted (every occurrence; matching ignores case): the texts followed
    by the shortened ones, and the (T, W) index of text t without word w in that list (-1 in unused slots). What a
    word adds to a score is the score of the text minus that of the text without it (the "deletion" word score, a
    word's contribution map). A text of one word leaves the empty text; encode these with `allow_empty`."""
    if isinstance(words, str) or any(isinstance(chosen, str) for chosen in words):
        flat = [words] if isinstance(words, str) else list(words)
        raise NtlbError(f"words should be one list of words per text, not {words!r}: use [{flat!r}] for one text")
    if len(words) != len(texts):
        raise NtlbError(f"{len(words)} word lists for {len(texts)} texts: give one list of semantic words per text")
    out, index = list(texts), torch.full((len(texts), max(map(len, words), default=1)), -1, dtype=torch.long)
    for t, (text, chosen) in enumerate(zip(texts, words)):
        spans = [span.text for span in tokenizer([text]).words[0]]
        for w, word in enumerate(chosen):
            if word.lower() not in (span.lower() for span in spans):
                raise NtlbError(f"'{word}' is not a word of '{text}': choose among {', '.join(spans)}")
            index[t, w] = len(out)
            out.append(" ".join(span for span in spans if span.lower() != word.lower()))
    return out, index
