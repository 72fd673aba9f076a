"""`Explanation`: the relevance of every patch and token for every explained image-text pair."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import PreprocessConfig
from ..models.tokenizer import TokenizedTexts
from .normalize import minmax, normalize_text, upsample, word_relevance


@dataclass
class Explanation:
    """Relevance maps of image-text pairs, indexed by image b and slot t:

    - pairs="all": every image with every text, slot t = text t; image (B, T, h, w), text (B, T, L);
    - pairs="diagonal": image i with text i; image (B, h, w), text (B, L) (index with b alone);
    - pairs="selected": K chosen texts per image, slot k = text columns[b, k]; image (B, K, h, w), text (B, K, L).

    image: patch relevance, None where the method or model gives no image maps (`image_note` says why).
    text: raw rows R[EOT, :] over the token positions (L = longest text + 1; positions after a text's EOT are 0),
    None where there is no text relevance (`text_note` says why).
    logits: (B, T) scores of every image with every text, in `logit_mode`.
    """

    image: Tensor | None
    text: Tensor | None
    logits: Tensor
    tokens: TokenizedTexts | None
    pairs: str
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

    def key(self, b: int, t: int | None = None) -> tuple[int, ...]:
        """The index of pair (b, t) into `image` and `text`: (b,) for diagonal pairs, (b, t) otherwise."""
        if self.pairs == "diagonal":
            if t is not None and t != b:
                raise NtlbError(f"pairs='diagonal' explains image {b} with text {b} only, not text {t}")
            return (b,)
        if t is None:
            raise NtlbError(f"pairs='{self.pairs}': give both the image index b and the slot t")
        return (b, t)

    def text_index(self, b: int, t: int | None = None) -> int:
        """The text explained in slot t of image b."""
        index = self.key(b, t)
        return int(self.columns[b, 0] if self.pairs == "diagonal" else self.columns[index])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.columns.shape if self.pairs != "diagonal" else self.columns.shape[:1])

    def require(self, purpose: str, image: bool = False, text: bool = False, all_pairs: bool = False) -> None:
        """A one-line error when this explanation lacks what `purpose` needs (maps, text relevance, all pairs)."""
        if image and self.image is None:
            raise NtlbError(f"{purpose} needs image maps: {self.image_note}")
        if text and not self.has_text_relevance():
            raise NtlbError(f"{purpose} needs text relevance: {self.text_note}")
        if all_pairs and self.pairs != "all":
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
        """(b, t) of every explained pair, as `image_map`, `words` and `text_index` take them (t = b for
        diagonal pairs)."""
        if self.pairs == "diagonal":
            return [(i, i) for i in range(self.columns.shape[0])]
        return [(b, t) for b in range(self.columns.shape[0]) for t in range(self.columns.shape[1])]
