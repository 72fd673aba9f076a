"""The explainer template. The base class owns the call sequence (grad state, wrap, which layers to keep, one
encoding of each image and text, which pairs, the Explanation); a method overrides only what is its own: the
layers it reads (`keep_from`), its own image encoding (`encode_images`), and its formula (`relevance`)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.inputs import ImageFeatures, ImageInput, Prompts, TextFeatures, TextInput, prepare_images, prepare_texts
from ..models.loading import wrap
from ..models.tokenizer import TokenizedTexts
from .explanation import Explanation
from .relevance import LOGIT_MODES, clip_scores
from .targets import Pairs, select_pairs


@dataclass
class Batch:
    """One call's inputs, encoded once: features, kept attentions, scores, and the pairs to explain."""

    adapter: ClipAdapter
    image: Encoded
    text: Encoded
    tokens: TokenizedTexts | None
    logits: Tensor  # (B, T)
    mode: str  # "all", "diagonal" or "selected"
    columns: Tensor  # (B, K) text explained in each slot of each image
    originals: list | None
    differentiable: bool
    images_as_features: bool
    texts_as_features: bool

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the image maps: the patch grid, or the captured convolutional stage's."""
        if self.image.activation is not None:
            return tuple(self.image.activation.shape[-2:])
        return self.adapter.grid_size

    def position(self, tower: str) -> Tensor:
        """The row each tower's relevance is read from: CLS (0) for images, each text's EOT for texts."""
        if tower == "image":
            return torch.zeros((), dtype=torch.long, device=self.logits.device)
        return self.tokens.eot.to(self.logits.device)


class Explainer:
    """Build once with options, call on batches: `explainer(model, images, texts, pairs="all")`.

    Images: paths, PIL images, preprocessed (B, 3, H, W) tensors, or `ImageFeatures`. Texts: strings, token ids,
    `TokenizedTexts`, `Prompts` (token embeddings with learned vectors) or `TextFeatures`. Pairs: "all",
    "diagonal", a (B, K) tensor of text indices per image, or `top_k(k)`. Results are differentiable when
    gradients are enabled and something upstream requires grad; under `torch.no_grad()` they are detached.
    """

    name = "explainer"
    uses_gradients = False  # the method takes gradients (it runs under enable_grad, whatever the caller's mode)
    gives_image_maps = True
    gives_text_relevance = True

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

    # ---- the call sequence (not overridden) ----------------------------------------------------------------
    def __call__(self, model, images: ImageInput, texts: TextInput, pairs: Pairs = "all") -> Explanation:
        grad_requested = torch.is_grad_enabled()  # read before enable_grad: decides whether results keep a graph
        adapter = wrap(model)
        self.check(adapter)
        with torch.enable_grad() if self.uses_gradients else nullcontext():
            batch = self.encode(adapter, images, texts, pairs, grad_requested)
            image, text = self.relevance(batch)
        return self.explanation(batch, image, text)

    def encode(self, adapter: ClipAdapter, images: ImageInput, texts: TextInput, pairs: Pairs,
               grad_requested: bool) -> Batch:
        """Preprocess, encode each image and each text once, score every image with every text, pick the pairs."""
        inputs: list[Tensor] = []
        originals = None
        if isinstance(images, ImageFeatures):
            image = Encoded(images.features.to(adapter.device))
            inputs.append(images.features)
        else:
            pixels, originals = prepare_images(adapter, images)
            image = self.encode_images(adapter, pixels)
            inputs.append(pixels)
        if isinstance(texts, TextFeatures):
            tokens, text = None, Encoded(texts.features.to(adapter.device))
            inputs.append(texts.features)
        elif isinstance(texts, Prompts):
            tokens = texts.tokens.truncated()
            embeddings = texts.embeddings[:, : tokens.ids.shape[1]]
            text = adapter.encode_text(tokens.ids, tokens.eot, self.keep_from(adapter, "text"), embeddings)
            inputs.append(texts.embeddings)
        else:
            tokens = prepare_texts(adapter, texts).truncated()
            text = adapter.encode_text(tokens.ids, tokens.eot, keep_from=self.keep_from(adapter, "text"))
        logits = clip_scores(image.features, text.features, adapter.logit_scale, self.logit_mode)
        mode, columns = select_pairs(pairs, logits)
        differentiable = grad_requested and (any(t.requires_grad for t in inputs)
                                             or any(p.requires_grad for p in adapter.model.parameters()))
        return Batch(adapter, image, text, tokens, logits, mode, columns, originals, differentiable,
                     isinstance(images, ImageFeatures), isinstance(texts, TextFeatures))

    # ---- what a method overrides ---------------------------------------------------------------------------
    def check(self, adapter: ClipAdapter) -> None:
        """Refuse, in one line, a model this method cannot explain."""

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        """The first layer whose attention the method reads (None: none); default the start layer."""
        if tower == "image" and not adapter.has_patch_attention:
            return None
        return adapter.resolve_layer(self.start_layer_image if tower == "image" else self.start_layer_text, tower)

    def encode_images(self, adapter: ClipAdapter, pixels: Tensor) -> Encoded:
        """The image encoding this method reads (CLIP's own forward; a method may run its own)."""
        return adapter.encode_image(pixels, keep_from=self.keep_from(adapter, "image"))

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        """(image rows (B, K, N), text rows (B, K, L)) of the pairs `batch.columns`; None for a tower the
        method does not explain. Image rows hold the h*w patches last (a leading CLS entry is dropped)."""
        raise NotImplementedError

    def options(self) -> dict:
        """The options that shape this explainer's maps, recorded in every Explanation."""
        return {"start_layer_image": self.start_layer_image, "start_layer_text": self.start_layer_text,
                "logit_mode": self.logit_mode, "create_graph": self.create_graph}

    # ---- shared ending -------------------------------------------------------------------------------------
    def explanation(self, batch: Batch, image: Tensor | None, text: Tensor | None) -> Explanation:
        """Wrap per-pair rows into an Explanation; detached unless the call was differentiable."""
        adapter = batch.adapter
        h, w = batch.grid
        if image is not None:
            image = image[..., -h * w :].reshape(*image.shape[:-1], h, w)
        if batch.mode == "diagonal":
            image = None if image is None else image[:, 0]
            text = None if text is None else text[:, 0]
        if not batch.differentiable:
            image = None if image is None else image.detach()
            text = None if text is None else text.detach()
        return Explanation(
            image=image, text=text, logits=batch.logits if batch.differentiable else batch.logits.detach(),
            tokens=batch.tokens, pairs=batch.mode, columns=batch.columns, method=self.name,
            logit_mode=self.logit_mode, logit_scale=float(adapter.logit_scale.detach()),
            input_size=adapter.preprocess_config.size, preprocess=adapter.preprocess_config,
            originals=batch.originals, image_note="" if image is not None else self.image_note(batch),
            text_note="" if text is not None else self.text_note(batch), options=self.options(),
        )

    def image_note(self, batch: Batch) -> str:
        """Why there are no image maps."""
        adapter = batch.adapter
        if batch.images_as_features:
            return "images were given as features: no image maps"
        if not self.gives_image_maps:
            return f"{self.name} explains texts only: no image maps"
        if adapter.last_conv_stage() is not None:
            return (f"this model's image tower ({adapter.image_tower}) is convolutional, without patch attention: "
                    f"{self.name} gives text relevance only; use method='gradcam' for image maps")
        return (f"ntlb cannot read this model's image tower ({adapter.image_tower}) yet: {self.name} gives text "
                "relevance only")

    def text_note(self, batch: Batch) -> str:
        """Why there is no text relevance."""
        if batch.texts_as_features:
            return "texts were given as features: no text relevance"
        return f"{self.name} explains images only: no text relevance"


def lay_out(image_rows: Tensor | None, text_rows: Tensor | None, columns: Tensor) -> tuple[Tensor | None,
                                                                                          Tensor | None]:
    """Rows that depend on one input only, laid over the pairs: image rows (B, N) -> (B, K, N) and text rows
    (T, L) -> (B, K, L)."""
    image = None if image_rows is None else image_rows[:, None].expand(-1, columns.shape[1], -1)
    text = None if text_rows is None else text_rows[columns.to(text_rows.device)]
    return image, text
