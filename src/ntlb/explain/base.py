"""The explainer template. The base class owns the call sequence (grad state, wrap, inputs, which layers to keep,
one encoding of each image and text, which pairs, tiles under a memory budget, the Explanation); a method
overrides only what is its own: the layers it reads (`keep_from`), its own image encoding (`encode_images`), and
its formula (`relevance`)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.inputs import ImageFeatures, ImageInput, Prompts, TextFeatures, TextInput, prepare_images, prepare_texts
from ..models.loading import wrap
from ..models.tokenizer import TokenizedTexts
from .explanation import Explanation
from .memory import Plan
from .relevance import LOGIT_MODES, clip_scores
from .targets import AllPairs, Columns, Pairs, Targets, as_targets


@dataclass
class Inputs:
    """What a call explains, prepared but not encoded: pixels or image features; tokens (with prompt embeddings)
    or text features."""

    pixels: Tensor | None
    image_features: Tensor | None
    originals: list | None
    tokens: TokenizedTexts | None
    embeddings: Tensor | None
    text_features: Tensor | None

    @property
    def images(self) -> int:
        return len(self.pixels if self.pixels is not None else self.image_features)

    @property
    def texts(self) -> int:
        return len(self.tokens) if self.tokens is not None else len(self.text_features)

    def requires_grad(self) -> bool:
        return any(t is not None and t.requires_grad
                   for t in (self.pixels, self.image_features, self.embeddings, self.text_features))

    def image_subset(self, index: list[int]) -> Inputs:
        """The same texts with the images at `index`."""
        return replace(self, pixels=_pick(self.pixels, index), image_features=_pick(self.image_features, index),
                       originals=None)

    def text_subset(self, index: list[int]) -> Inputs:
        """The same images with the texts at `index` (cut at their own last EOT)."""
        tokens = None if self.tokens is None else self.tokens.select(index).truncated()
        embeddings = None if self.embeddings is None else self.embeddings[index][:, : tokens.ids.shape[1]]
        return replace(self, tokens=tokens, embeddings=embeddings, text_features=_pick(self.text_features, index))


def _pick(tensor: Tensor | None, index: list[int]) -> Tensor | None:
    return None if tensor is None else tensor[index]


def prepare_inputs(adapter: ClipAdapter, images: ImageInput, texts: TextInput) -> Inputs:
    """Preprocessed pixels (or features) and tokens cut at their last EOT (or features, or prompt embeddings)."""
    if isinstance(images, ImageFeatures):
        pixels, features, originals = None, images.features.to(adapter.device), None
    else:
        (pixels, originals), features = prepare_images(adapter, images), None
    if isinstance(texts, TextFeatures):
        return Inputs(pixels, features, originals, None, None, texts.features.to(adapter.device))
    if isinstance(texts, Prompts):
        tokens = texts.tokens.truncated()
        return Inputs(pixels, features, originals, tokens, texts.embeddings[:, : tokens.ids.shape[1]], None)
    return Inputs(pixels, features, originals, prepare_texts(adapter, texts).truncated(), None, None)


@dataclass
class Batch:
    """One call's (or one tile's) inputs, encoded once: features, kept attentions, scores, the pairs to explain."""

    adapter: ClipAdapter
    image: Encoded
    text: Encoded
    tokens: TokenizedTexts | None
    logits: Tensor  # (B, T)
    targets: Targets  # which pairs (the call's; a tile's are Columns)
    columns: Tensor  # (B, K) text explained in each slot of each image
    originals: list | None
    differentiable: bool
    images_as_features: bool
    texts_as_features: bool
    image_chunk: int | None = None  # gradient targets per call (None: all at once)
    text_chunk: int | None = None
    keep_image_graph: bool = False  # keep the image graph after the gradient calls (tiles reuse an image group's)
    plan: Plan | None = None  # the memory plan the chunks come from (re-checked between gradient calls)
    interactions: Tensor | None = None  # (B, K, L, N) token x image-token terms, for methods that give them
    completeness: Tensor | None = None  # (B, K, 2): the interactions' sum and the score difference it must equal

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the image maps: the patch grid, or the captured convolutional stage's."""
        if self.image.activation is not None:
            return tuple(self.image.activation.shape[-2:])
        return self.adapter.grid_size

    def explained(self, maps: Tensor) -> Tensor:
        """The explained pairs' rows (B, K, P) of maps computed for every text (B, T, P)."""
        columns = self.columns.to(maps.device)
        return maps.gather(1, columns[..., None].expand(-1, -1, maps.shape[-1]))

    def position(self, tower: str) -> Tensor:
        """The row each tower's relevance is read from: CLS (0) for images, each text's EOT (CoCa: its appended
        class token) for texts."""
        if tower == "image":
            return torch.zeros((), dtype=torch.long, device=self.logits.device)
        return self.adapter.text_pool_positions(self.tokens.eot, self.tokens.ids.shape[1]).to(self.logits.device)


class Explainer:
    """Build once with options, call on batches: `explainer(model, images, texts, pairs="all")`.

    Images: paths, PIL images, preprocessed (B, 3, H, W) tensors, or `ImageFeatures`. Texts: strings, token ids,
    `TokenizedTexts`, `Prompts` (token embeddings with learned vectors) or `TextFeatures`. Pairs: a `Targets`
    value (`AllPairs()`, `Diagonal()`, `Columns(indices)`, `TopK(k)`), or "all", "diagonal", a (B, K) tensor of
    text indices per image, or `top_k(k)`; the Explanation is (B, K, ...) whatever they are. Results are
    differentiable when
    gradients are enabled and something upstream requires grad; under `torch.no_grad()` they are detached.
    `chunk_size`: gradient targets per call, "auto" (default: chosen, with tiles of images x texts, to fit
    `max_memory`, by default half the memory available) or None (all at once).
    """

    name = "explainer"
    uses_gradients = False  # the method takes gradients (it runs under enable_grad, whatever the caller's mode)
    gives_image_maps = True
    gives_text_relevance = True
    gives_interactions = False  # token x patch terms whose marginals are the maps and rows (`Explanation.word_map`)
    reads_attention_pooling = False  # maps image towers pooled by an attention head (SigLIP, CoCa)

    def __init__(self, start_layer_image: int = 0, start_layer_text: int = 0, logit_mode: str = "scaled",
                 create_graph: bool = False, chunk_size: int | str | None = "auto",
                 max_memory: int | str | None = None):
        from .memory import parse_memory

        if logit_mode not in LOGIT_MODES:
            raise NtlbError(f"unknown logit_mode '{logit_mode}': use 'scaled', 'cosine' or 'sigmoid' (SigLIP)")
        if chunk_size not in (None, "auto") and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise NtlbError(f"chunk_size={chunk_size!r}: use a positive number of targets per gradient call, "
                            "'auto' or None")
        self.start_layer_image = start_layer_image
        self.start_layer_text = start_layer_text
        self.logit_mode = logit_mode
        self.create_graph = create_graph
        self.chunk_size = chunk_size
        self.max_memory = parse_memory(max_memory)

    # ---- the call sequence (not overridden) ----------------------------------------------------------------
    def __call__(self, model, images: ImageInput, texts: TextInput, pairs: Pairs = "all") -> Explanation:
        grad_requested = torch.is_grad_enabled()  # read before enable_grad: decides whether results keep a graph
        adapter = wrap(model)
        self.check(adapter)
        if adapter.pools_image_by_attention and not self.reads_attention_pooling:
            from .registry import capable

            raise NtlbError(f"{self.name} reads an image at its class token, and this model's image tower "
                            f"({adapter.image_tower}) pools by attention: use "
                            f"{', '.join(capable('maps of attention-pooled image towers'))}")
        inputs = prepare_inputs(adapter, images, texts)
        pairs = as_targets(pairs)
        differentiable = grad_requested and (inputs.requires_grad()
                                             or any(p.requires_grad for p in adapter.model.parameters()))
        with torch.enable_grad() if self.uses_gradients else nullcontext():
            plan = self.plan(adapter, inputs, pairs, differentiable)
            if plan is not None and (plan.image_group < inputs.images or plan.text_group < inputs.texts):
                return self._tiled(adapter, inputs, pairs, plan)
            batch = self.encode(adapter, inputs, pairs, differentiable)
            if plan is not None:
                batch.image_chunk, batch.text_chunk, batch.plan = plan.image_chunk, plan.text_chunk, plan
            image, text = self.relevance(batch)
        return self.explanation(batch, image, text)

    def encode(self, adapter: ClipAdapter, inputs: Inputs, pairs: Targets, differentiable: bool) -> Batch:
        """Encode each image and each text once, score every image with every text, pick the pairs."""
        image = self._encode_images(adapter, inputs)
        text = self._encode_texts(adapter, inputs)
        logits = clip_scores(image.features, text.features, adapter.logit_scale, self.logit_mode, adapter.logit_bias)
        columns = pairs.columns(logits)
        chunk = self.chunk_size if isinstance(self.chunk_size, int) else None
        return Batch(adapter, image, text, inputs.tokens, logits, pairs, columns, inputs.originals, differentiable,
                     inputs.image_features is not None, inputs.text_features is not None, chunk, chunk)

    def _encode_images(self, adapter: ClipAdapter, inputs: Inputs) -> Encoded:
        if inputs.image_features is not None:
            return Encoded(inputs.image_features)
        return self.encode_images(adapter, inputs.pixels)

    def _encode_texts(self, adapter: ClipAdapter, inputs: Inputs) -> Encoded:
        if inputs.text_features is not None:
            return Encoded(inputs.text_features)
        tokens = inputs.tokens
        return adapter.encode_text(tokens.ids, tokens.eot, self.keep_from(adapter, "text"), inputs.embeddings)

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

    def plan(self, adapter: ClipAdapter, inputs: Inputs, pairs: Targets, differentiable: bool) -> Plan | None:
        """Tiles and gradient chunks for a memory budget (None: the whole call at once, as gradient-free
        methods do)."""
        return None

    def options(self) -> dict:
        """The options that shape this explainer's maps, recorded in every Explanation."""
        return {"start_layer_image": self.start_layer_image, "start_layer_text": self.start_layer_text,
                "logit_mode": self.logit_mode, "create_graph": self.create_graph}

    # ---- tiles: groups of images x groups of texts, each explained on its own ------------------------------
    def _tiled(self, adapter: ClipAdapter, inputs: Inputs, pairs: Targets, plan: Plan) -> Explanation:
        """The same Explanation as one call, computed tile by tile: each image group is encoded once and walked
        by groups of the texts its pairs need; a pair's relevance depends on its image and text only."""
        count_images, count_texts = inputs.images, inputs.texts
        if isinstance(pairs, AllPairs):
            logits = None
            columns = torch.arange(count_texts, device=adapter.device).expand(count_images, -1)
        else:
            with torch.no_grad():
                logits = clip_scores(self._encode_images(adapter, inputs).features,
                                     self._encode_texts(adapter, inputs).features, adapter.logit_scale,
                                     self.logit_mode, adapter.logit_bias)
            columns = pairs.columns(logits)
        full_logits = torch.zeros(count_images, count_texts, device=adapter.device) if logits is None else logits
        length = inputs.tokens.ids.shape[1] if inputs.tokens is not None else 0
        full_logits, image_rows, text_rows, grid = logits, None, None, None
        for start in range(0, count_images, plan.image_group):
            group = list(range(start, min(start + plan.image_group, count_images)))
            subset = inputs.image_subset(group)
            image = None  # the last group's graph goes before the next is built
            image = self._encode_images(adapter, subset)
            wanted = columns[group]
            needed = sorted(set(wanted.flatten().tolist()))
            for text_start in range(0, len(needed), plan.text_group):
                texts = needed[text_start : text_start + plan.text_group]
                tile_inputs = subset.text_subset(texts)
                text = batch = None
                text = self._encode_texts(adapter, tile_inputs)
                tile_logits = clip_scores(image.features, text.features, adapter.logit_scale, self.logit_mode,
                                          adapter.logit_bias)
                tile_columns, slots = _tile_pairs(wanted, texts)
                batch = Batch(adapter, image, text, tile_inputs.tokens, tile_logits, Columns(tile_columns),
                              tile_columns, None, False, inputs.image_features is not None,
                              inputs.text_features is not None, plan.image_chunk, plan.text_chunk,
                              keep_image_graph=True, plan=plan)
                grid = grid or batch.grid
                image_part, text_part = self.relevance(batch)
                if logits is None:
                    if full_logits is None:
                        full_logits = tile_logits.new_zeros(count_images, count_texts)
                    full_logits[start : start + len(group), texts] = tile_logits.detach()
                rows, kept = (slots >= 0).nonzero(as_tuple=True)
                target = (torch.tensor(group, device=rows.device)[rows], slots[rows, kept])
                if image_part is not None:
                    if image_rows is None:
                        image_rows = image_part.new_zeros(count_images, columns.shape[1], image_part.shape[-1])
                    image_rows[target] = image_part[rows, kept].detach()
                if text_part is not None:
                    if text_rows is None:
                        text_rows = text_part.new_zeros(count_images, columns.shape[1], length)
                    text_rows[target] = F.pad(text_part, (0, length - text_part.shape[-1]))[rows, kept].detach()
        image = text = batch = None
        whole = Batch(adapter, Encoded(torch.empty(0)), Encoded(torch.empty(0)), inputs.tokens, full_logits.detach(),
                      pairs, columns, inputs.originals, False, inputs.image_features is not None,
                      inputs.text_features is not None)
        return self.explanation(whole, image_rows, text_rows, grid)


    # ---- shared ending -------------------------------------------------------------------------------------
    def explanation(self, batch: Batch, image: Tensor | None, text: Tensor | None,
                    grid: tuple[int, int] | None = None) -> Explanation:
        """Wrap per-pair rows into an Explanation; detached unless the call was differentiable."""
        adapter = batch.adapter
        h, w = grid or batch.grid
        if image is not None:
            image = image[..., -h * w :].reshape(*image.shape[:-1], h, w)
        if text is not None and batch.tokens is not None:
            text = text[..., : batch.tokens.ids.shape[1]]  # CoCa's appended class token is not a token of the text
        interactions, completeness = batch.interactions, batch.completeness
        if interactions is not None:
            interactions = interactions[..., -h * w :].reshape(*interactions.shape[:-1], h, w)
            interactions = interactions[..., : batch.tokens.ids.shape[1], :, :]
        parts = [image, text, interactions, completeness]
        if not batch.differentiable:
            parts = [None if part is None else part.detach() for part in parts]
        image, text, interactions, completeness = parts
        return Explanation(
            image=image, text=text, logits=batch.logits if batch.differentiable else batch.logits.detach(),
            tokens=batch.tokens, targets=batch.targets, columns=batch.columns, method=self.name,
            logit_mode=self.logit_mode, logit_scale=float(adapter.logit_scale.detach()),
            input_size=adapter.preprocess_config.size, preprocess=adapter.preprocess_config,
            originals=batch.originals, image_note="" if image is not None else self.image_note(batch),
            text_note="" if text is not None else self.text_note(batch), options=self.options(),
            logit_bias=None if adapter.logit_bias is None else float(adapter.logit_bias.detach()),
            interactions=interactions, completeness=completeness,
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


def _tile_pairs(wanted: Tensor, texts: list[int]) -> tuple[Tensor, Tensor]:
    """For a tile's images (rows of `wanted`, their (g, K) texts) and its texts: (g, k) tile-local text indices of
    the pairs the tile holds, packed left, and the (g, k) slot each came from (-1: padding, which repeats a pair)."""
    local = {t: i for i, t in enumerate(texts)}
    chosen = [[(slot, local[int(c)]) for slot, c in enumerate(row.tolist()) if int(c) in local] for row in wanted]
    width = max(1, max(len(row) for row in chosen))
    columns = torch.zeros(len(chosen), width, dtype=torch.long, device=wanted.device)
    slots = torch.full((len(chosen), width), -1, dtype=torch.long, device=wanted.device)
    for i, row in enumerate(chosen):
        for j, (slot, column) in enumerate(row):
            columns[i, j], slots[i, j] = column, slot
    return columns, slots
