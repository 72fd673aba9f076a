"""The semantic-word loss of text-guided editing (paper Eq. 3; SPEC section 5) and of multi-word text-to-image
guidance (supplementary; SPEC 5b), computed from any explainer's text relevance: every semantic word of the text
must carry relevance, so the optimisation cannot satisfy CLIP through a few words alone.

Word scores ("paper", default): a word is the max of its tokens' relevance, the score the mean over the semantic
words. "released" (the released EGCLIPLoss): one weight per word of the text (1 for semantic words, 0 for the
others) min-max normalised and copied to its tokens, score = sum_k r_k d_k / #(d_k != 0); where every word weighs
the same the released code divides by zero (NaN) and ntlb weighs every word 1. "mass" (for the `interactions`
explainer): a word's interaction mass with the image, the raw sum over its tokens clamped at 0, averaged over the
semantic words; not normalised over the text, so a word the picture lacks loses mass without handing it to the
others (the shares of "paper" sum to about 1 over the words whatever the picture).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import NtlbError
from ..explain.explanation import Explanation
from ..explain.normalize import normalize_text
from ..models.tokenizer import TokenizedTexts
from .stop_words import STOP_WORDS

WORD_SCORES = ("paper", "released", "mass")
NEGLECT_THRESHOLD = 0.7  # relevance / max relevance below which a word is neglected (the authors' FuseDream notebook)


def content_words(text: str, tokens: TokenizedTexts | None = None, tokenizer=None) -> list[str]:
    """The words of `text` (as CLIP's tokenizer splits it) that are not stop words (spaCy's English list) nor
    punctuation: the semantic words when none are given."""
    if tokens is None:
        tokens = tokenizer(text)
    words = [w.text for w in tokens.words[0]]
    chosen = [w for w in dict.fromkeys(words) if w.isalpha() and w.lower() not in STOP_WORDS]
    if not chosen:
        raise NtlbError(f"no semantic word left in {text!r} after removing stop words: give them with --words")
    return chosen


def word_token_masks(tokens: TokenizedTexts, words: Sequence[Sequence[str]]) -> Tensor:
    """(T, W, L) token masks of the chosen words of each text (W: the most words chosen for a text; rows past a
    text's own count are all False). A word that occurs twice covers both occurrences; matching ignores case."""
    if len(words) != len(tokens):
        raise NtlbError(f"{len(words)} word lists for {len(tokens)} texts: give one list of semantic words per text")
    width = max((len(chosen) for chosen in words), default=0)
    masks = torch.zeros(len(tokens), max(width, 1), tokens.ids.shape[1], dtype=torch.bool)
    for t, chosen in enumerate(words):
        if not chosen:
            raise NtlbError(f"no semantic word for text {t + 1}: give at least one word of the text")
        spans = tokens.words[t]
        for w, word in enumerate(chosen):
            hits = [span for span in spans if span.text.lower() == word.lower()]
            if not hits:
                text = " ".join(span.text for span in spans)
                raise NtlbError(f"'{word}' is not a word of '{text}': choose among {', '.join(s.text for s in spans)}")
            for span in hits:
                masks[t, w, span.start : span.end] = True
    return masks


def _rows(explanation: Explanation, normalize: str) -> Tensor:
    """The explained pairs' text rows (..., L) in a normalisation, with the EOT of each pair's text."""
    explanation.require("the semantic-word loss", text=True)
    rows = explanation.text
    eot = explanation.tokens.eot.to(rows.device)
    return normalize_text(rows, eot[explanation.columns.to(rows.device)], normalize)


def _pair_masks(explanation: Explanation, masks: Tensor) -> Tensor:
    """The word masks of each explained pair's text: (B, K, W, L)."""
    masks = masks.to(explanation.text.device)[..., : explanation.text.shape[-1]]
    return masks[explanation.columns.to(masks.device)]


def semantic_word_scores(explanation: Explanation, masks: Tensor, variant: str = "paper",
                         normalize: str = "visual") -> Tensor:
    """The semantic-word score of every explained pair, (B, K) as the explanation's slots. `masks`: (T, W,
    L) from `word_token_masks`. normalize: "visual" (editing: R[EOT, 1:EOT] / sum) or "max" (multi-word guidance:
    then divided by its max)."""
    if variant not in WORD_SCORES:
        raise NtlbError(f"unknown word score '{variant}': use one of {', '.join(WORD_SCORES)}")
    rows = _rows(explanation, "raw" if variant == "mass" else normalize)
    pair_masks = _pair_masks(explanation, masks)
    chosen = pair_masks.any(dim=-1)  # (..., W): the word slots in use
    if variant == "mass":
        per_word = (rows[..., None, :] * pair_masks).sum(dim=-1).clamp(min=0)
        return per_word.sum(dim=-1) / chosen.sum(dim=-1).clamp_min(1)
    if variant == "paper":
        per_word = rows[..., None, :].masked_fill(~pair_masks, float("-inf")).amax(dim=-1)
        per_word = per_word.masked_fill(~chosen, 0.0)
        return per_word.sum(dim=-1) / chosen.sum(dim=-1).clamp_min(1)
    weights = pair_masks.any(dim=-2).to(rows.dtype)  # 1 on the semantic words' tokens, 0 on the other words'
    spans = explanation.tokens.ids.new_zeros(explanation.tokens.ids.shape, dtype=torch.bool)
    for t, words in enumerate(explanation.tokens.words):
        for word in words:
            spans[t, word.start : word.end] = True
    spans = _pair_masks(explanation, spans[:, None, :])[..., 0, :].to(rows.device)
    every_word_chosen = (weights.bool() == spans).all(dim=-1, keepdim=True)
    weights = torch.where(every_word_chosen, spans.to(rows.dtype), weights)  # equal weights: all 1, not NaN
    return (rows * weights).sum(dim=-1) / (weights != 0).sum(dim=-1).clamp_min(1)


def semantic_word_loss(explanation: Explanation, masks: Tensor, variant: str = "paper",
                       normalize: str = "visual") -> Tensor:
    """-score of every explained pair (paper Eq. 3 without its lambda), shaped as `semantic_word_scores`."""
    return -semantic_word_scores(explanation, masks, variant, normalize)


def neglected_words(explanation: Explanation, b: int, t: int | None, candidates: Sequence[str],
                    threshold: float = NEGLECT_THRESHOLD) -> list[str]:
    """The candidates whose relevance, divided by the text's highest word relevance, is below `threshold`
    (the authors' FuseDream notebook: 0.7 with the scaled score)."""
    relevance = dict(explanation.words(b, t, normalize="max"))
    lowered = {word.lower(): value for word, value in relevance.items()}
    return [word for word in candidates if lowered.get(word.lower(), 0.0) < threshold]
