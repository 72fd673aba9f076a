"""What every explainer shares: options, input preparation, one encoding of each image and text."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.loading import wrap
from ..models.tokenizer import TokenizedTexts
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
        image = adapter.encode_image(pixels, keep_from=keep_image)
        text = adapter.encode_text(tokens.ids, tokens.eot, keep_from=keep_text)
        logits = clip_scores(image.features, text.features, adapter.logit_scale, self.logit_mode)
        return Batch(adapter, image, text, tokens, logits, originals, differentiable)

    def __call__(self, model, images: ImageInput, texts: TextInput, pairs: str = "all"):
        raise NotImplementedError
