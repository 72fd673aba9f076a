"""Why a learned prompt scores an image (paper Fig. 2): relevance of v_1..v_M, the class name and the image patches."""

from __future__ import annotations

import torch
from torch import Tensor

from ..explain.relevance import one_hot_targets, propagated_rows
from ..models.adapter import ClipAdapter
from .prompt_training import prompt_logits
from .prompts import PromptLearner


def prompt_words(adapter: ClipAdapter, learner: PromptLearner, row: Tensor, c: int) -> list[tuple[str, float]]:
    """(word, relevance) over prompt c's words: v1..vM, the class name's words, "."; normalised to sum 1."""
    layout = learner.layout
    eot = int(layout.eot[c])
    context = {int(p): f"v{i + 1}" for i, p in enumerate(layout.context[c])}
    tokens = adapter.tokenizer.from_ids(layout.ids[c : c + 1]).tokens[0]
    words, current, value = [], None, 0.0
    for position in range(1, eot):
        if position in context:
            words.append((context[position], float(row[position])))
            continue
        piece = tokens[position]
        text = piece.replace("</w>", "")
        current = text if current is None else current + text
        value = max(value, float(row[position]))
        if piece.endswith("</w>") or position == eot - 1 or position + 1 in context:
            words.append((current, value))
            current, value = None, 0.0
    total = sum(v for _, v in words) or 1.0
    return [(w, v / total) for w, v in words]


def explain_prompts(adapter: ClipAdapter, learner: PromptLearner, pixels: Tensor, true: list[int | None]):
    """For each image b, its predicted class and true[b] (when given): (probabilities (B, C), predicted (B,),
    per image a list of (class, word relevance, patch map (h, w))).

    Each image is encoded once and every prompt once; relevance comes from batched gradients.
    """
    with torch.enable_grad():
        image = adapter.encode_image(pixels, keep_from=0 if adapter.has_patch_attention else None)
        logits, prompts = prompt_logits(adapter, learner, image.features, keep_from=0)
        b_count, c_count = logits.shape
        predicted = logits.detach().argmax(dim=1).tolist()
        classes = [sorted({p} | ({t} if t is not None else set())) for p, t in zip(predicted, true)]
        text_rows = propagated_rows(logits, prompts.attentions,
                                    one_hot_targets(b_count, (b_count, c_count), 0, logits.device, logits.dtype),
                                    learner.layout.eot.to(logits.device), False, True)  # (B, C, L)
        maps, picked = None, sorted({c for wanted in classes for c in wanted})
        if image.attentions:  # only the classes asked for: one batched VJP over them
            targets = torch.zeros(len(picked), b_count, c_count, device=logits.device, dtype=logits.dtype)
            targets[torch.arange(len(picked)), :, picked] = 1
            cls = torch.zeros((), dtype=torch.long, device=logits.device)
            maps = propagated_rows(logits, image.attentions, targets, cls, False, False).transpose(0, 1)
    h, w = adapter.grid_size
    out = []
    for b, wanted in enumerate(classes):
        out.append([(c, prompt_words(adapter, learner, text_rows[b, c].detach(), c),
                     None if maps is None else maps[b, picked.index(c), 1:].detach().reshape(h, w)) for c in wanted])
    return logits.detach().softmax(dim=-1), predicted, out
