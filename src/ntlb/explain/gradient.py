"""The shared half of gradient-based explainers: batched gradients of the selected scores with respect to what
the method reads (attention probabilities, a convolutional stage), chunked and tiled to fit a memory budget. A
method supplies only `combine`: how its formula turns those tensors and their gradients into one relevance row
per pair."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from ..models.adapter import ClipAdapter
from .base import Batch, Explainer, Inputs
from .memory import Plan, measure_costs, memory_budget, plan_tiles
from .relevance import attention_gradients
from .targets import Targets, image_targets, text_targets


class GradientExplainer(Explainer):
    """Relevance from d(score)/d(tensors) for every selected pair, in one autograd call per tower and chunk.

    Image side: K gradient targets (slot k of every image at once). Text side: one target per round, a round
    selecting each text once. With chunk_size="auto" the targets per call and, when even one call of the whole
    batch would not fit, tiles of images x texts are chosen from the memory budget.
    """

    uses_gradients = True

    def gradient_inputs(self, batch: Batch, tower: str) -> list[Tensor]:
        """The tensors the method differentiates against (default: the kept attention probabilities)."""
        return (batch.image if tower == "image" else batch.text).attentions

    def combine(self, batch: Batch, tower: str, tensors: list[Tensor], gradients: list[Tensor],
                targets: Tensor) -> Tensor:
        """The method's formula: tensors (layers first) with their gradients (K, *tensor.shape) -> rows (K, n, N)
        read at `batch.position(tower)` (CLS for images, EOT per text). targets (K, B, T) are the score
        selectors the gradients were taken of (for methods whose rule also depends on the pair, such as LRP)."""
        raise NotImplementedError

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        image_inputs = self.gradient_inputs(batch, "image")
        text_inputs = self.gradient_inputs(batch, "text")
        keep_graph = batch.differentiable or self.create_graph
        image = text = None
        if image_inputs:  # the graph stays for the text side's call and for the next tile of this image group
            targets = image_targets(batch.columns, batch.logits)
            image = self._rows(batch, "image", image_inputs, targets, batch.image_chunk,
                               keep_graph or bool(text_inputs) or batch.keep_image_graph).transpose(0, 1)
        if text_inputs:
            targets, rounds = text_targets(batch.columns, batch.logits)
            text = self._rows(batch, "text", text_inputs, targets, batch.text_chunk, keep_graph)[rounds, batch.columns]
        return image, text

    def _rows(self, batch: Batch, tower: str, tensors: list[Tensor], targets: Tensor, chunk: int | None,
              retain: bool) -> Tensor:
        size = chunk or targets.shape[0]
        rows, start = [], 0
        while start < targets.shape[0]:
            if batch.plan is not None:  # memory may have shrunk since the plan (or a tile began): re-check it
                size = batch.plan.chunk_now(tower, size, batch.logits.device)
            last = start + size >= targets.shape[0]
            gradients = attention_gradients(batch.logits, tensors, targets[start : start + size], self.create_graph,
                                            retain or not last)
            rows.append(self.combine(batch, tower, tensors, gradients, targets[start : start + size]))
            start += size
        return rows[0] if len(rows) == 1 else torch.cat(rows)

    def plan(self, adapter: ClipAdapter, inputs: Inputs, pairs: Targets, differentiable: bool) -> Plan | None:
        """With chunk_size="auto": the chunks (and, unless the results are differentiable, whose graphs are kept
        anyway, the tiles) whose estimated peak fits `max_memory` (default: half the memory available now)."""
        if self.chunk_size != "auto":
            return None
        budget = memory_budget(self.max_memory, adapter.device)
        costs = measure_costs(adapter, self.keep_from(adapter, "image"), self.keep_from(adapter, "text"))
        if inputs.image_features is not None:
            costs = replace(costs, image_graph=0.0, image_attention=0.0)
        if inputs.text_features is not None:
            costs = replace(costs, token_graph=0.0, text_attention_per_token2=0.0)
        length = inputs.tokens.ids.shape[1] if inputs.tokens is not None else 1
        return plan_tiles(costs, inputs.images, inputs.texts, length, pairs.slots(), budget, tiles=not differentiable)
