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
    """Relevance maps of B images x T texts (pairs="all") or of image i with text i (pairs="diagonal").

    image: (B, T, h, w) or (B, h, w) patch relevance, None for towers without patch attention.
    text: (B, T, L) or (B, L) raw rows R[EOT, :] over the token positions (L = longest text + 1; positions
    after a text's EOT are 0).
    logits: (B, T) scores of every image with every text, in `logit_mode`.
    """

    image: Tensor | None
    text: Tensor
    logits: Tensor
    tokens: TokenizedTexts
    pairs: str
    method: str
    logit_mode: str
    logit_scale: float
    input_size: tuple[int, int]
    preprocess: PreprocessConfig | None = None
    originals: list[Image.Image] | None = None
    image_note: str = ""
    text_note: str = ""
    options: dict = field(default_factory=dict)

    def _index(self, b: int, t: int | None) -> tuple[int, ...]:
        if self.pairs == "diagonal":
            if t is not None and t != b:
                raise NtlbError(f"pairs='diagonal' explains image {b} with text {b} only, not text {t}")
            return (b,)
        if t is None:
            raise NtlbError("pairs='all': give both the image index b and the text index t")
        return (b, t)

    def text_index(self, b: int, t: int | None = None) -> int:
        return b if self.pairs == "diagonal" else int(t)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.text.shape[:-1])

    def has_image_maps(self) -> bool:
        return self.image is not None

    def image_map(self, b: int, t: int | None = None, size: tuple[int, int] | None = None,
                  normalize: bool = True) -> Tensor:
        """The (h, w) patch map of a pair, upsampled to `size` (default: model input) and min-max scaled."""
        if self.image is None:
            raise NtlbError(self.image_note or f"{self.method} gave no image maps for this model")
        patch = self.image[self._index(b, t)].detach().float()
        out = upsample(patch, size or self.input_size)
        return minmax(out) if normalize else out

    def text_relevance(self, b: int, t: int | None = None, normalize: str = "visual") -> Tensor:
        """The token row of a pair in a named normalisation (see `normalize_text`)."""
        index = self._index(b, t)
        row = self.text[index].detach()
        return normalize_text(row, self.tokens.eot[self.text_index(b, t)], normalize)

    def words(self, b: int, t: int | None = None, normalize: str = "visual") -> list[tuple[str, float]]:
        """(word, relevance) for the words of the pair's text; a word's relevance is its max over tokens."""
        row = self.text_relevance(b, t, normalize)
        return word_relevance(row, self.tokens.words[self.text_index(b, t)])

    def probabilities(self) -> Tensor:
        """Softmax over the given texts of the scaled scores, (B, T)."""
        scaled = self.logits.detach().float()
        if self.logit_mode == "cosine":
            scaled = scaled * self.logit_scale
        return scaled.softmax(dim=-1)

    def pair_indices(self) -> list[tuple[int, int]]:
        """(image, text) index of every explained pair."""
        if self.pairs == "diagonal":
            return [(i, i) for i in range(self.text.shape[0])]
        return [(b, t) for b in range(self.text.shape[0]) for t in range(self.text.shape[1])]
