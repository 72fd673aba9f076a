"""What an explainer explains: which image-text pairs, and the score selectors of its batched gradients.

Pairs are given as "all" (every image with every text), "diagonal" (image i with text i), a (B, K) tensor of
text indices per image (chosen classes), or a function of the (B, T) scores that returns one (`top_k`).
Internally every choice is a (B, K) table `columns` of the text explained in each of an image's K slots.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import NtlbError

Pairs = str | Tensor | Callable[[Tensor], Tensor]


def top_k(k: int) -> Callable[[Tensor], Tensor]:
    """Pairs of each image with its k highest-scoring texts (e.g. the predicted class: `top_k(1)`)."""
    if k < 1:
        raise NtlbError(f"top_k({k}): explain at least one text per image")
    return lambda logits: logits.topk(min(k, logits.shape[1]), dim=1).indices


def select_pairs(pairs: Pairs, logits: Tensor) -> tuple[str, Tensor]:
    """(mode, columns): mode "all", "diagonal" or "selected"; columns (B, K) text indices on the logits' device."""
    b, t = logits.shape
    device = logits.device
    if isinstance(pairs, str):
        if pairs == "all":
            return "all", torch.arange(t, device=device).expand(b, t)
        if pairs == "diagonal":
            if b != t:
                raise NtlbError(f"pairs='diagonal' needs as many texts as images, got {b} images and {t} texts")
            return "diagonal", torch.arange(b, device=device)[:, None]
        raise NtlbError(f"unknown pairs '{pairs}': use 'all', 'diagonal', a (B, K) tensor of text indices or top_k(k)")
    columns = pairs(logits.detach()) if callable(pairs) else pairs
    columns = torch.as_tensor(columns, device=device)
    if columns.ndim == 1:
        columns = columns[:, None]
    if columns.ndim != 2 or columns.shape[0] != b or columns.is_floating_point():
        raise NtlbError(f"pairs has shape {tuple(columns.shape)}: give ({b}, K) integer text indices, a row per image")
    if columns.numel() and (int(columns.min()) < 0 or int(columns.max()) >= t):
        raise NtlbError(f"pairs names text {int(columns.max())} but there are {t} texts: use indices 0..{t - 1}")
    return "selected", columns.long()


def image_targets(columns: Tensor, logits: Tensor) -> Tensor:
    """(K, B, T) selectors: target k picks score (b, columns[b, k]) of every image b. Each image's attention only
    reaches its own scores, so one gradient per target gives every image's map for its k-th text."""
    k = columns.shape[1]
    targets = torch.zeros(k, *logits.shape, device=logits.device, dtype=logits.dtype)
    slots = torch.arange(k, device=logits.device)[None, :]
    images = torch.arange(logits.shape[0], device=logits.device)[:, None]
    targets[slots, images, columns] = 1
    return targets


def text_targets(columns: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """(R, B, T) selectors for the text side and the (B, K) round each pair's row is read from.

    A text's attention gets gradients from every image it is scored with, so one gradient call may select each
    text once only: a pair goes to round r when its text was explained r times before it (row by row). R is the
    most times any text is explained: 1 for diagonal pairs, B for all pairs, a few for top-k classes.
    """
    flat = columns.flatten()
    order = torch.arange(flat.numel(), device=flat.device)
    same = (flat[:, None] == flat[None, :]) & (order[None, :] < order[:, None])
    rounds = same.sum(dim=1).reshape(columns.shape)
    rows = torch.arange(columns.shape[0], device=columns.device)[:, None].expand_as(columns)
    targets = torch.zeros(int(rounds.max()) + 1, *logits.shape, device=logits.device, dtype=logits.dtype)
    targets[rounds, rows, columns] = 1
    return targets, rounds
