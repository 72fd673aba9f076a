"""What every explainer shares: options, input preparation, one encoding of each image and text."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.loading import wrap
from ..models.tokenizer import TokenizedTexts
from .explanation import Explanation
from .inputs import ImageInput, TextInput, prepare_images, prepare_texts
from .relevance import LOGIT_MODES, clip_scores

PAIRS = ("all", "diagonal")


@dataclass
class Batch:
    """Inputs of one call, encoded once: features, kept attentions, scores."""

    adapter: ClipAdapter
    image: Encoded
    text: Encoded
    tokens: TokenizedTexts
    logits: Tensor
    originals: list | None
    differentiable: bool


class Explainer:
    """Build once with options, call on batches: `explainer(model, images, texts, pairs="all")`."""

    name = "explainer"

    def __init__(self, start_layer_image: int = 0, start_layer_text: int = 0, logit_mode: str = "scaled",
                 create_graph: bool = False, chunk_size: int | None = None):
        if logit_mode not in LOGIT_MODES:
            raise NtlbError(f"unknown logit_mode '{logit_mode}': use 'scaled' or 'cosine'")
        if chunk_size is not None and chunk_size < 1:
            raise NtlbError(f"chunk_size={chunk_size}: use a positive number of targets per gradient call")
        self.start_layer_image = start_layer_image
        self.start_layer_text = start_layer_text
        self.logit_mode = logit_mode
        self.create_graph = create_graph
        self.chunk_size = chunk_size

    def encode(self, model, images: ImageInput, texts: TextInput, pairs: str,
               keep_image: int | None, keep_text: int | None, grad_requested: bool) -> Batch:
        """Preprocess, encode each image and each text once, score every pair.

        grad_requested: whether the caller had gradients enabled (read before any enable_grad), which with
        something upstream requiring grad makes the results differentiable.
        """
        if pairs not in PAIRS:
            raise NtlbError(f"unknown pairs '{pairs}': use 'all' or 'diagonal'")
        adapter = wrap(model)
        pixels, originals = prepare_images(adapter, images)
        tokens = prepare_texts(adapter, texts).truncated()
        if pairs == "diagonal" and len(pixels) != len(tokens):
            raise NtlbError(
                f"pairs='diagonal' needs as many texts as images, got {len(pixels)} images and {len(tokens)} texts"
            )
        differentiable = grad_requested and (
            pixels.requires_grad or any(p.requires_grad for p in adapter.model.parameters())
        )
        image = self.encode_images(adapter, pixels, keep_image)
        text = adapter.encode_text(tokens.ids, tokens.eot, keep_from=keep_text)
        logits = clip_scores(image.features, text.features, adapter.logit_scale, self.logit_mode)
        return Batch(adapter, image, text, tokens, logits, originals, differentiable)

    def encode_images(self, adapter: ClipAdapter, pixels: Tensor, keep_from: int | None) -> Encoded:
        """The image encoding this method reads (CLIP's own forward; a method may run its own)."""
        return adapter.encode_image(pixels, keep_from=keep_from)

    def __call__(self, model, images: ImageInput, texts: TextInput, pairs: str = "all") -> Explanation:
        raise NotImplementedError

    def options(self) -> dict:
        """The options that shape this explainer's maps, recorded in every Explanation."""
        return {"start_layer_image": self.start_layer_image, "start_layer_text": self.start_layer_text,
                "create_graph": self.create_graph}

    def explanation(self, batch: Batch, image: Tensor | None, text: Tensor, pairs: str, image_note: str = "",
                    text_note: str = "") -> Explanation:
        """Wrap relevance rows into an Explanation: image rows (..., 1 + h*w) or (..., h*w) become (..., h, w);
        everything is detached unless the call was differentiable."""
        adapter = batch.adapter
        keep = batch.differentiable
        h, w = adapter.grid_size
        if image is not None:
            image = image[..., -h * w :].reshape(*image.shape[:-1], h, w)
        detach = (lambda x: x) if keep else (lambda x: None if x is None else x.detach())
        return Explanation(
            image=detach(image), text=detach(text), logits=detach(batch.logits), tokens=batch.tokens,
            pairs=pairs, method=self.name, logit_mode=self.logit_mode,
            logit_scale=float(adapter.logit_scale.detach()), input_size=adapter.preprocess_config.size,
            preprocess=adapter.preprocess_config, originals=batch.originals, image_note=image_note,
            text_note=text_note, options=self.options(),
        )


def per_pair(image_rows: Tensor | None, text_rows: Tensor, pairs: str, images: int) -> tuple[Tensor | None, Tensor]:
    """Rows that depend on one input only, laid out per pair: image rows (B, N) and text rows (T, L) become
    (B, T, N) and (B, T, L) for pairs="all", or stay (B, N) and (B, L) for pairs="diagonal"."""
    if pairs == "diagonal":
        return image_rows, text_rows
    texts = text_rows.shape[0]
    image = None if image_rows is None else image_rows[:, None].expand(-1, texts, -1)
    return image, text_rows[None].expand(images, -1, -1)


def no_image_maps(method: str) -> str:
    """The note an Explanation carries when a method cannot map this image tower."""
    return (f"this model's image tower is a ResNet without patch attention: {method} gives text relevance only; "
            "use method='gradcam' for image maps")
