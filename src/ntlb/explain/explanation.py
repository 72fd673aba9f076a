"""`Explanation`: the relevance of every patch and token for every explained image-text pair."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import PreprocessConfig, view_box
from ..models.tokenizer import TokenizedTexts
from .normalize import minmax, normalize_text, upsample, word_relevance
from .targets import AllPairs, Targets


@dataclass
class Explanation:
    """Relevance maps of image-text pairs, indexed by image b and slot t, one shape whatever the targets:
    image (B, K, h, w), text (B, K, L), slot t of image b explaining text columns[b, t]:

    - AllPairs ("all"): every image with every text, K = T and slot t = text t;
    - Diagonal ("diagonal"): image i with text i, K = 1 (index with b alone, or (b, 0));
    - Columns, TopK, ByScores: K chosen texts per image.

    image: patch relevance, None where the method or model gives no image maps (`image_note` says why).
    text: raw rows R[EOT, :] over the token positions (L = longest text + 1; positions after a text's EOT are 0),
    None where there is no text relevance (`text_note` says why).
    logits: (B, T) scores of every image with every text, in `logit_mode`.
    """

    image: Tensor | None
    text: Tensor | None
    logits: Tensor
    tokens: TokenizedTexts | None
    targets: Targets
    columns: Tensor
    method: str
    logit_mode: str
    logit_scale: float
    input_size: tuple[int, int]
    preprocess: PreprocessConfig | None = None
    originals: list[Image.Image] | None = None
    image_note: str = ""
    text_note: str = ""
    options: dict = field(default_factory=dict)
    logit_bias: float | None = None  # SigLIP's b: scores are sigmoid(s * cos + b) match probabilities
    interactions: Tensor | None = None  # (..., L, h, w) token x patch terms (method "interactions"), else None
    completeness: Tensor | None = None  # (..., 2): the sum of a pair's interactions (class token included) and the
    # score difference it must equal, (e(text) - e(text ref)) . (e(image) - e(image ref)) in the explained units

    def key(self, b: int, t: int | None = None) -> tuple[int, int]:
        """The index (b, t) of image b's slot t into `image` and `text`; t may be left out when every image has one
        slot (Diagonal, TopK(1))."""
        slots = self.columns.shape[1]
        if t is None:
            if slots != 1:
                raise NtlbError(f"this explanation has {slots} texts per image: give the slot t (0..{slots - 1}) "
                                f"as well as the image {b}")
            return (b, 0)
        if not 0 <= t < slots:
            raise NtlbError(f"slot {t} is outside the {slots} text{'s' if slots > 1 else ''} explained per image: "
                            f"use 0..{slots - 1}")
        return (b, t)

    def text_index(self, b: int, t: int | None = None) -> int:
        """The text explained in slot t of image b."""
        return int(self.columns[self.key(b, t)])

    @property
    def shape(self) -> tuple[int, int]:
        """(B, K): images and slots per image."""
        return tuple(self.columns.shape)

    def require(self, purpose: str, image: bool = False, text: bool = False, all_pairs: bool = False) -> None:
        """A one-line error when this explanation lacks what `purpose` needs (maps, text relevance, all pairs)."""
        if image and self.image is None:
            raise NtlbError(f"{purpose} needs image maps: {self.image_note}")
        if text and not self.has_text_relevance():
            raise NtlbError(f"{purpose} needs text relevance: {self.text_note}")
        if all_pairs and not isinstance(self.targets, AllPairs):
            raise NtlbError(f"{purpose} needs every image with every text: explain with pairs='all'")

    def has_image_maps(self) -> bool:
        return self.image is not None

    def has_text_relevance(self) -> bool:
        return self.text is not None and self.tokens is not None

    def image_map(self, b: int, t: int | None = None, size: tuple[int, int] | None = None,
                  normalize: bool = True) -> Tensor:
        """The (h, w) patch map of a pair, upsampled to `size` (default: model input) and min-max scaled, in the
        explanation's own dtype."""
        if self.image is None:
            raise NtlbError(self.image_note or f"{self.method} gave no image maps for this model")
        patch = self.image[self.key(b, t)].detach()
        out = upsample(patch, size or self.input_size)
        return minmax(out) if normalize else out

    def text_relevance(self, b: int, t: int | None = None, normalize: str = "visual") -> Tensor:
        """The token row of a pair in a named normalisation (see `normalize_text`)."""
        if not self.has_text_relevance():
            raise NtlbError(self.text_note or f"{self.method} gave no text relevance")
        row = self.text[self.key(b, t)].detach()
        return normalize_text(row, self.tokens.eot[self.text_index(b, t)], normalize)

    def words(self, b: int, t: int | None = None, normalize: str = "visual") -> list[tuple[str, float]]:
        """(word, relevance) for the words of the pair's text. A word's relevance is the max over its tokens, so
        with "visual" the tokens sum to 1 and the words do too only when every word is one token."""
        row = self.text_relevance(b, t, normalize)
        return word_relevance(row, self.tokens.words[self.text_index(b, t)])

    def logit(self, b: int, t: int | None = None) -> float:
        """The score of a pair, in `logit_mode`."""
        return float(self.logits[b, self.text_index(b, t)])

    def probabilities(self) -> Tensor:
        """(B, T): softmax over the given texts of the scaled scores (CLIP); for a model with a logit bias
        (SigLIP) each pair's own match probability sigmoid(s * cos + b), as it was trained."""
        scores = self.logits.detach().float()
        if self.logit_mode == "sigmoid":
            return scores
        if self.logit_mode == "cosine":
            scores = scores * self.logit_scale + (self.logit_bias or 0.0)
        return scores.softmax(dim=-1) if self.logit_bias is None else scores.sigmoid()

    def pair_indices(self) -> list[tuple[int, int]]:
        """(b, t) of every explained pair (image, slot), as `image_map`, `words` and `text_index` take them."""
        return [(b, t) for b in range(self.columns.shape[0]) for t in range(self.columns.shape[1])]

    # ---- second-order views (method "interactions") ---------------------------------------------------------
    def _pair_interactions(self, purpose: str, b: int, t: int | None) -> Tensor:
        if self.interactions is None:
            raise NtlbError(f"{purpose} needs token x patch interactions: explain with method='interactions' "
                            f"(this explanation is {self.method}'s)")
        return self.interactions[self.key(b, t)].detach()

    def word_span(self, b: int, t: int | None, word: str | int) -> tuple[int, int]:
        """Token positions [start, end) of a word (its index, or its text: one word or consecutive words, any
        case) in the pair's text; a one-line error names the words when it is not there."""
        spans = self.tokens.words[self.text_index(b, t)]
        if isinstance(word, int):
            if not 0 <= word < len(spans):
                raise NtlbError(f"word {word} is outside the text's {len(spans)} words: use 0..{len(spans) - 1}")
            return spans[word].start, spans[word].end
        wanted = word.lower().split()
        texts = [span.text.lower() for span in spans]
        for i in range(len(spans) - len(wanted) + 1):
            if wanted and texts[i : i + len(wanted)] == wanted:
                return spans[i].start, spans[i + len(wanted) - 1].end
        raise NtlbError(f"'{word}' is not in the text '{' '.join(s.text for s in spans)}': choose among "
                        f"{', '.join(s.text for s in spans)}")

    def word_map(self, b: int, t: int | None, word: str | int, size: tuple[int, int] | None = None) -> Tensor:
        """The (H, W) map of one word's (or span's) interactions with each patch, at `size` (default: the model
        input): where in the picture the score rests on that word. Signed: below 0 the region argues against it."""
        start, end = self.word_span(b, t, word)
        patches = self._pair_interactions("word_map", b, t)[start:end].sum(dim=0)
        return upsample(patches, size or self.input_size)

    def word_maps(self, b: int, t: int | None = None) -> list[tuple[str, Tensor]]:
        """(word, (h, w) patch interactions) for every word of the pair's text."""
        rows = self._pair_interactions("word_maps", b, t)
        return [(w.text, rows[w.start : w.end].sum(dim=0)) for w in self.tokens.words[self.text_index(b, t)]]

    def region_words(self, b: int, t: int | None, box: tuple[float, float, float, float],
                     image_size: tuple[int, int] | None = None) -> list[tuple[str, float]]:
        """(word, interaction with the patches inside `box`) for every word of the pair's text, a patch counted by
        the share of it the box covers. box = (x0, y0, x1, y1) in pixels of the original picture (when the call had
        pictures; else of the model input), or of a picture of `image_size` (width, height)."""
        rows = self._pair_interactions("region_words", b, t)
        weights = self.box_weights(b, box, image_size).to(rows.device, rows.dtype)
        per_token = (rows * weights).sum(dim=(-1, -2))
        return [(w.text, float(per_token[w.start : w.end].sum())) for w in self.tokens.words[self.text_index(b, t)]]

    def box_weights(self, b: int, box: tuple[float, float, float, float],
                    image_size: tuple[int, int] | None = None) -> Tensor:
        """(h, w): the share of each patch that a box (pixels of the original picture, or of `image_size`) covers,
        through the preprocessing's resize and crop. One-line errors for a box that is empty or outside the picture
        or outside what the model sees."""
        if image_size is None:
            image_size = self.originals[b].size if self.originals else (self.input_size[1], self.input_size[0])
        width, height = image_size
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x0 < x1 and y0 < y1):
            raise NtlbError(f"box {x0:g} {y0:g} {x1:g} {y1:g} is empty: give x0 y0 x1 y1 with x0 < x1 and y0 < y1")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise NtlbError(f"box {x0:g} {y0:g} {x1:g} {y1:g} is outside the {width}x{height} image: keep it "
                            f"within 0 0 {width} {height}")
        left, top, right, bottom = view_box(image_size, self.preprocess) if self.preprocess else (0, 0, width, height)
        h, w = self.interactions.shape[-2:]
        across = _coverage(x0, x1, left, right, w)
        down = _coverage(y0, y1, top, bottom, h)
        if across.sum() == 0 or down.sum() == 0:
            raise NtlbError(f"box {x0:g} {y0:g} {x1:g} {y1:g} lies outside the part of the picture the model sees "
                            f"(x {left:.0f}..{right:.0f}, y {top:.0f}..{bottom:.0f}): move it inside")
        return down[:, None] * across[None, :]


def _coverage(start: float, end: float, view_start: float, view_end: float, cells: int) -> Tensor:
    """The share of each of `cells` equal cells spanning [view_start, view_end] that [start, end] covers."""
    edges = torch.linspace(view_start, view_end, cells + 1, dtype=torch.float64)
    overlap = (torch.minimum(edges[1:], torch.tensor(end)) - torch.maximum(edges[:-1], torch.tensor(start)))
    return (overlap.clamp(min=0) / (edges[1:] - edges[:-1])).float()
