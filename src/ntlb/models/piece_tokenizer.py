"""Tokenizers other than CLIP's BPE (SigLIP's SentencePiece, SigLIP2's Gemma), seen as ntlb's tokenizer: the ids the
model's own tokenizer gives (padded to the full context, as these towers are trained), the position the text feature
is read from, and word spans from the pieces' word-start marks ("▁" for SentencePiece, "Ġ" for byte-level BPE)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import NtlbError
from .tokenizer import TokenizedTexts, Word, first_end, padded_ids

WORD_STARTS = ("▁", "Ġ")


class PieceTokenizer:
    """A Hugging Face tokenizer with ntlb's interface. pool: "last" (SigLIP: the last position, padding included)
    or "eos" (the first end-of-text token). `clean` is the model's text cleaning (open_clip's "canonicalize")."""

    fixed_length = True  # the text towers that use these tokenizers see every position: never cut

    def __init__(self, tokenizer, context_length: int, pool: str = "last",
                 clean: Callable[[str], str] | None = None, encode: Callable[[list[str]], Tensor] | None = None):
        if pool not in ("last", "eos"):
            raise NtlbError(f"text pooling '{pool}' with a Hugging Face tokenizer: ntlb reads 'last' or 'eos'")
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.pool = pool
        self.clean = clean or (lambda text: text)
        self.encode = encode  # the model's own tokenisation (open_clip's HFTokenizer: its cleaning, sep stripping)
        model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
        self.continuation = getattr(model, "continuing_subword_prefix", None)  # WordPiece's "##"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.special = set(tokenizer.all_special_ids)
        self.vocab_size = len(tokenizer)

    def __call__(self, texts: str | list[str], allow_empty: bool = False) -> TokenizedTexts:
        """Tokenise one text or a list of texts (empty ones too with `allow_empty`), padded to the context length
        (the model's own ids where given)."""
        ids = padded_ids(texts, self.context_length, self.pad_id,
                         lambda text: self.tokenizer(self.clean(text))["input_ids"], allow_empty)
        if self.encode is not None:
            ids = self.encode([texts] if isinstance(texts, str) else list(texts)).long()
        return self.from_ids(ids)

    def from_ids(self, ids: Tensor) -> TokenizedTexts:
        """Token strings, pooled positions and word spans of given token ids (T, context length)."""
        ids = _full_length_ids(ids, self.context_length)
        if self.pool == "last":
            eot = torch.full((ids.shape[0],), self.context_length - 1, dtype=torch.long)
        else:
            eot = first_end(ids, self.eos_id)
        tokens, words = [], []
        for row, end in zip(ids.tolist(), eot.tolist()):
            pieces = self.tokenizer.convert_ids_to_tokens(row[: end + 1])
            tokens.append(pieces)
            words.append(self._word_spans(row[: end + 1], pieces))
        return TokenizedTexts(ids, eot, tokens, words, fixed_length=True)

    def _word_spans(self, row: list[int], pieces: list[str]) -> list[Word]:
        spans, start = [], None
        for position, (token_id, piece) in enumerate(zip(row, pieces)):
            special = token_id in self.special
            starts = piece.startswith(WORD_STARTS) if self.continuation is None else \
                not piece.startswith(self.continuation)
            if start is not None and (special or starts):
                spans.append(self._word(pieces, start, position))
                start = None
            if special:
                if token_id == self.eos_id or token_id == self.pad_id:
                    break
                continue
            if start is None:
                start = position
        if start is not None:
            spans.append(self._word(pieces, start, len(pieces)))
        return [span for span in spans if span.text]

    def _word(self, pieces: list[str], start: int, end: int) -> Word:
        return Word(self.tokenizer.convert_tokens_to_string(pieces[start:end]).strip(), start, end)


def piece_tokenizer_of(tokenizer, context_length: int, pool: str = "last", clean: str | None = None) -> PieceTokenizer:
    """ntlb's tokenizer from what a user holds: open_clip's HFTokenizer (its cleaning kept), a transformers
    tokenizer, or the directory of one saved with `save_pretrained` (cleaned as `clean` names, open_clip's
    cleaning functions: "canonicalize" for SigLIP)."""
    from pathlib import Path

    if isinstance(tokenizer, PieceTokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if not path.is_dir():
            raise NtlbError(f"tokenizer directory not found: {tokenizer}: pass the folder a Hugging Face tokenizer "
                            "was saved to (save_pretrained)")
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise NtlbError("a Hugging Face tokenizer needs transformers: pip install 'ntlb[hf]'") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except Exception as err:  # noqa: BLE001 - the fix is the same whatever transformers raised
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise NtlbError(f"cannot load a tokenizer from {path}: {first}") from None
    clean_fn = getattr(tokenizer, "clean_fn", None)
    if clean_fn is None and clean:
        from open_clip.tokenizer import get_clean_fn

        clean_fn = get_clean_fn(clean)
    inner = getattr(tokenizer, "tokenizer", tokenizer)  # open_clip's HFTokenizer holds the transformers one
    if not hasattr(inner, "convert_ids_to_tokens"):
        raise NtlbError(f"cannot use {type(tokenizer).__name__} as a tokenizer: pass open_clip's tokenizer for the "
                        "model, a transformers tokenizer or its directory")
    encode = tokenizer if inner is not tokenizer else None
    return PieceTokenizer(inner, context_length, pool, clean_fn, encode)


class IdsOnlyTokenizer:
    """What a model wrapped without its tokenizer reads: token ids (as its tokenizer gave them), never strings. The
    words are then unknown: each token is a word of its own, named by its id ("#17"). pool: "last" (SigLIP) or
    "argmax" (the highest id, CLIP's end of text)."""

    fixed_length = True

    def __init__(self, context_length: int, vocab_size: int, pool: str = "last"):
        if pool not in ("last", "argmax"):
            raise NtlbError(f"this model reads its text at '{pool}', which token ids alone do not give: pass its "
                            "tokenizer")
        self.context_length, self.vocab_size, self.pool = context_length, vocab_size, pool

    def refuse(self) -> None:
        """The one-line answer to strings, given where texts come in (`prepare_texts`, `text_features`)."""
        raise NtlbError("this model was wrapped without its tokenizer, so it reads token ids only (a (T, L) tensor "
                        "from its own tokenizer): pass the ids, or wrap it with tokenizer=DIR to explain strings")

    def __call__(self, texts, allow_empty: bool = False) -> TokenizedTexts:
        """A stand-in of the right shape (padding ids, no words) for the memory planner's cost probe, which tokenises
        a sample text; user texts never get here: the input functions refuse strings first (`refuse`)."""
        count = 1 if isinstance(texts, str) else len(texts)
        ids = torch.zeros(count, self.context_length, dtype=torch.long)
        eot = torch.full((count,), self.context_length - 1, dtype=torch.long)
        return TokenizedTexts(ids, eot, [[] for _ in range(count)], [[] for _ in range(count)], fixed_length=True)

    def from_ids(self, ids: Tensor) -> TokenizedTexts:
        """Pooled positions and one word per token, named by its id (the words are unknown without a tokenizer)."""
        ids = _full_length_ids(ids, self.context_length)
        if int(ids.max()) >= self.vocab_size or int(ids.min()) < 0:
            raise NtlbError(f"token ids go up to {int(ids.max())} but the model's vocabulary has {self.vocab_size} "
                            "tokens: tokenise with the model's own tokenizer")
        if self.pool == "last":
            eot = torch.full((ids.shape[0],), self.context_length - 1, dtype=torch.long)
        else:
            eot = ids.argmax(dim=1)
        tokens = [[f"#{i}" for i in row[: end + 1]] for row, end in zip(ids.tolist(), eot.tolist())]
        words = [[Word(token, position, position + 1) for position, token in enumerate(row)] for row in tokens]
        return TokenizedTexts(ids, eot, tokens, words, fixed_length=True)


def _full_length_ids(ids: Tensor, context_length: int) -> Tensor:
    """(T, context length) long ids on the CPU, for towers that read every position; one-line error otherwise."""
    if ids.ndim == 1:
        ids = ids.unsqueeze(0)
    ids = ids.long().cpu()
    if ids.shape[1] != context_length:
        raise NtlbError(f"token ids have length {ids.shape[1]} but this model reads all {context_length} "
                        "positions: tokenise with the model's tokenizer")
    return ids
