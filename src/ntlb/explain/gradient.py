"""The shared half of gradient-based explainers: batched gradients of the selected scores with respect to what
the method reads (attention probabilities, a convolutional stage), chunked to bound memory. A method supplies
only `combine`: how its formula turns those tensors and their gradients into one relevance row per pair."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Batch, Explainer
from .relevance import attention_gradients
from .targets import image_targets, text_targets


class GradientExplainer(Explainer):
    """Relevance from d(score)/d(tensors) for every selected pair, in one autograd call per tower and chunk.

    Image side: K gradient targets (slot k of every image at once). Text side: one target, or one per image when
    a text is explained for several images. `chunk_size` targets per call bound the memory.
    """

    uses_gradients = True

    def gradient_inputs(self, batch: Batch, tower: str) -> list[Tensor]:
        """The tensors the method differentiates against (default: the kept attention probabilities)."""
        return (batch.image if tower == "image" else batch.text).attentions

    def combine(self, batch: Batch, tower: str, tensors: list[Tensor], gradients: list[Tensor]) -> Tensor:
        """The method's formula: tensors (layers first) with their gradients (K, *tensor.shape) -> rows (K, n, N)
        read at `batch.position(tower)` (CLS for images, EOT per text)."""
        raise NotImplementedError

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        image_inputs = self.gradient_inputs(batch, "image")
        text_inputs = self.gradient_inputs(batch, "text")
        keep_graph = batch.differentiable or self.create_graph
        image = text = None
        if image_inputs:
            targets = image_targets(batch.columns, batch.logits)
            image = self._rows(batch, "image", image_inputs, targets, keep_graph or bool(text_inputs)).transpose(0, 1)
        if text_inputs:
            targets, rounds = text_targets(batch.columns, batch.logits)
            text = self._rows(batch, "text", text_inputs, targets, keep_graph)[rounds, batch.columns]
        return image, text

    def _rows(self, batch: Batch, tower: str, tensors: list[Tensor], targets: Tensor, retain: bool) -> Tensor:
        size = self.chunk_size or targets.shape[0]
        rows = []
        for start in range(0, targets.shape[0], size):
            last = start + size >= targets.shape[0]
            gradients = attention_gradients(batch.logits, tensors, targets[start : start + size], self.create_graph,
                                            retain or not last)
            rows.append(self.combine(batch, tower, tensors, gradients))
        return rows[0] if len(rows) == 1 else torch.cat(rows)
