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

**The paper's mean cannot see a missing word.** Normalised shares of a fixed set of words sum to about
1 - (the stop words' share) whatever the picture: a word the picture lacks hands its share to the others and the
mean barely moves (docs/results-explainers.md, the word-grounding test: chance or below). The grounded scores:
"softmin" (a soft minimum over the words' shares, so the least relevant word decides), "contrast" (each word's
share against its share for the same text on reference pictures, soft minimum) and "deletion" (each word's own
share of the score: the score minus the score of the text without that word, soft minimum; text occlusion, the
one score that reads no explainer's relevance). "deletion" wins the grounding test (98% against the paper's 31%),
so it is the default of editing and generation (`ntlb.config.guidance`; their loops compute the shortened texts'
features once, `ntlb.tasks.guidance.editing.WordTerm`); the paper's mean stays selectable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import NtlbError
from ..explain.explanation import Explanation
from ..explain.normalize import normalize_text
from ..explain.targets import AllPairs
from ..models.tokenizer import TokenizedTexts
from .stop_words import STOP_WORDS

WORD_SCORES = ("paper", "released", "mass", "softmin", "contrast", "deletion")
SOFTMIN_TEMPERATURE = 0.25  # in units of the words' mean share; chosen on the grounding test's selection seeds
DELETION_TEMPERATURE = 0.1  # in cosine units; chosen the same way (docs/results-explainers.md)
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
                         normalize: str = "visual", reference: Tensor | None = None,
                         dropped: Tensor | None = None) -> Tensor:
    """The semantic-word score of every explained pair, (B, K) as the explanation's slots. `masks`: (T, W,
    L) from `word_token_masks`. normalize: "visual" (editing: R[EOT, 1:EOT] / sum) or "max" (multi-word guidance:
    then divided by its max). `reference` ("contrast"): (T, W) from `reference_word_shares`; `dropped`
    ("deletion"): (T, W) columns of `explanation.logits` holding each text without each word (`without_words`)."""
    if variant not in WORD_SCORES:
        raise NtlbError(f"unknown word score '{variant}': use one of {', '.join(WORD_SCORES)}")
    if variant in GROUNDED_SCORES:
        return grounded_word_scores(explanation, masks, variant, normalize, reference, dropped)
    rows = _rows(explanation, "raw" if variant == "mass" else normalize)
    pair_masks = _pair_masks(explanation, masks)
    chosen = pair_masks.any(dim=-1)  # (..., W): the word slots in use
    if variant == "mass":
        per_word = (rows[..., None, :] * pair_masks).sum(dim=-1).clamp(min=0)
        return per_word.sum(dim=-1) / chosen.sum(dim=-1).clamp_min(1)
    if variant == "paper":
        return word_shares(explanation, masks, normalize).sum(dim=-1) / chosen.sum(dim=-1).clamp_min(1)
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
                       normalize: str = "visual", reference: Tensor | None = None,
                       dropped: Tensor | None = None) -> Tensor:
    """-score of every explained pair (paper Eq. 3 without its lambda), shaped as `semantic_word_scores` (whose
    `reference` and `dropped` the grounded scores need)."""
    return -semantic_word_scores(explanation, masks, variant, normalize, reference, dropped)


def neglected_words(explanation: Explanation, b: int, t: int | None, candidates: Sequence[str],
                    threshold: float = NEGLECT_THRESHOLD) -> list[str]:
    """The candidates whose relevance, divided by the text's highest word relevance, is below `threshold`
    (the authors' FuseDream notebook: 0.7 with the scaled score)."""
    relevance = dict(explanation.words(b, t, normalize="max"))
    lowered = {word.lower(): value for word, value in relevance.items()}
    return [word for word in candidates if lowered.get(word.lower(), 0.0) < threshold]


GROUNDED_SCORES = ("softmin", "contrast", "deletion")


def word_shares(explanation: Explanation, masks: Tensor, normalize: str = "visual") -> Tensor:
    """(..., W) each chosen word's relevance (the max over its tokens, as "paper") of every explained pair; 0 in
    the word slots a text does not use."""
    rows = _rows(explanation, normalize)
    pair_masks = _pair_masks(explanation, masks)
    per_word = rows[..., None, :].masked_fill(~pair_masks, float("-inf")).amax(dim=-1)
    return per_word.masked_fill(~pair_masks.any(dim=-1), 0.0)


def soft_minimum(values: Tensor, chosen: Tensor, temperature: float) -> Tensor:
    """-t log(mean over the chosen slots of exp(-v / t)): between the minimum (t -> 0) and the mean (t -> inf) of
    the chosen values, smooth, so every word gets gradient and the least relevant the most."""
    if temperature <= 0:
        raise NtlbError(f"soft-minimum temperature {temperature}: use a positive number")
    scaled = (-values / temperature).masked_fill(~chosen, float("-inf"))
    count = chosen.sum(dim=-1).clamp_min(1).to(values.dtype)
    return -temperature * (torch.logsumexp(scaled, dim=-1) - count.log())


def _chosen_mean(values: Tensor, chosen: Tensor) -> Tensor:
    return (values * chosen).sum(dim=-1, keepdim=True) / chosen.sum(dim=-1, keepdim=True).clamp_min(1)


def mean_word_shares(explanation: Explanation, masks: Tensor, normalize: str = "visual") -> Tensor:
    """(T, W) each chosen word's share for each text, averaged over the images of an explanation of every image
    with every text (pairs="all"): the reference of "contrast"."""
    if not isinstance(explanation.targets, AllPairs):
        raise NtlbError("reference shares need every reference picture with every text: explain with pairs='all'")
    return word_shares(explanation, masks, normalize).detach().float().mean(dim=0)


def reference_word_shares(explainer, model, pictures, texts, masks: Tensor, normalize: str = "visual") -> Tensor:
    """(T, W) each chosen word's share for its text, averaged over reference `pictures` (for "contrast": e.g. a few
    world scenes that do not show the text). Computed once, without gradient: it is a constant of the loss."""
    if not len(pictures):
        raise NtlbError("no reference picture: give at least one for the 'contrast' word score")
    with torch.no_grad():
        return mean_word_shares(explainer(model, pictures, texts, pairs="all"), masks, normalize)


def deletion_word_scores(full: Tensor, dropped: Tensor, chosen: Tensor,
                         temperature: float = DELETION_TEMPERATURE) -> Tensor:
    """Soft minimum over the words of (score of the text - score of the text without the word), scores in cosine
    units: full (...,), dropped and chosen (..., W). A word the picture lacks adds nothing (or lowers the score),
    so its term falls whatever the other words do."""
    return soft_minimum(full[..., None] - dropped, chosen, temperature)


def grounded_word_scores(explanation: Explanation, masks: Tensor, variant: str, normalize: str = "visual",
                         reference: Tensor | None = None, dropped: Tensor | None = None) -> Tensor:
    """The scores that see a missing word ("softmin", "contrast", "deletion"; see the module's docstring), shaped
    as `semantic_word_scores`."""
    chosen = _pair_masks(explanation, masks).any(dim=-1)
    if variant == "deletion":
        if dropped is None:
            raise NtlbError("the 'deletion' word score needs the texts without each word: explain the texts of "
                            "`without_words` too and pass its index as dropped=")
        logits = explanation.logits
        if explanation.logit_mode == "scaled":
            logits = logits / explanation.logit_scale
        texts = explanation.columns.to(logits.device)  # (B, K)
        rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
        slots = dropped.to(logits.device)[texts]  # (..., W): where each pair's text without each word was scored
        without = logits[rows[..., None], slots.clamp_min(0)]
        return deletion_word_scores(logits[rows, texts], without, chosen & (slots >= 0))
    shares = word_shares(explanation, masks, normalize)
    if variant == "softmin":
        return soft_minimum(shares / _chosen_mean(shares, chosen).clamp_min(torch.finfo(shares.dtype).tiny),
                            chosen, SOFTMIN_TEMPERATURE)
    if reference is None:
        raise NtlbError("the 'contrast' word score needs the words' shares on reference pictures: pass "
                        "reference=reference_word_shares(...)")
    columns = explanation.columns.to(shares.device)
    base = reference.to(shares)[columns][..., : shares.shape[-1]]
    scale = _chosen_mean(base, chosen).clamp_min(torch.finfo(shares.dtype).tiny)
    return soft_minimum((shares - base) / scale, chosen, SOFTMIN_TEMPERATURE)
