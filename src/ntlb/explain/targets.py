"""What an explainer explains: which image-text pairs (a value of its own type, as captum's `target=`), and the
score selectors of its batched gradients.

The targets are `AllPairs()` (every image with every text), `Diagonal()` (image i with text i), `Columns(indices)`
(a (B, K) tensor of chosen text indices per image), `TopK(k)` (each image's k best-scoring texts) or `ByScores(fn)`
(a function of the (B, T) scores that returns a (B, K) table). The public entry also takes the strings "all" and
"diagonal", a tensor or a function, converted once by `as_targets`. Every choice resolves to a (B, K) table
`columns` of the text explained in each of an image's K slots, so an Explanation has one shape, (B, K, ...),
whatever its targets (K = 1 for Diagonal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import NtlbError


class Targets:
    """Which pairs to explain; `columns(logits)` gives the (B, K) text index of each image's slots."""

    name = "targets"

    def columns(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def slots(self) -> int | None:
        """K when it is known before scoring (for the memory planner); None: plan for every text."""
        return None


@dataclass(frozen=True)
class AllPairs(Targets):
    """Every image with every text: slot t of each image is text t."""

    name = "all"

    def columns(self, logits: Tensor) -> Tensor:
        b, t = logits.shape
        return torch.arange(t, device=logits.device).expand(b, t)


@dataclass(frozen=True)
class Diagonal(Targets):
    """Image i with text i (as many texts as images): one slot per image."""

    name = "diagonal"

    def columns(self, logits: Tensor) -> Tensor:
        b, t = logits.shape
        if b != t:
            raise NtlbError(f"pairs='diagonal' needs as many texts as images, got {b} images and {t} texts")
        return torch.arange(b, device=logits.device)[:, None]

    def slots(self) -> int | None:
        return 1


@dataclass(frozen=True, eq=False)
class Columns(Targets):
    """Chosen texts per image: a (B, K) table of text indices (a (B,) one is one text per image)."""

    indices: Tensor
    name = "selected"

    def columns(self, logits: Tensor) -> Tensor:
        return _checked(self.indices, logits)

    def slots(self) -> int | None:
        indices = torch.as_tensor(self.indices)
        return 1 if indices.ndim == 1 else int(indices.shape[-1]) if indices.ndim == 2 else None


@dataclass(frozen=True)
class TopK(Targets):
    """Each image with its k highest-scoring texts, best first (e.g. the predicted class: `TopK(1)`)."""

    k: int
    name = "top_k"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise NtlbError(f"top_k({self.k}): explain at least one text per image")

    def columns(self, logits: Tensor) -> Tensor:
        return logits.detach().topk(min(self.k, logits.shape[1]), dim=1).indices

    def subset(self, logits: Tensor) -> tuple[list[int], Tensor]:
        """(the texts any image needs, sorted; each image's k best as (B, k) indices into that list): for explaining
        only those texts when they are few among many."""
        columns = self.columns(logits)
        needed = sorted(set(columns.flatten().tolist()))
        position = {text: i for i, text in enumerate(needed)}
        local = torch.tensor([position[c] for c in columns.flatten().tolist()], dtype=torch.long)
        return needed, local.reshape(columns.shape)


@dataclass(frozen=True, eq=False)
class ByScores(Targets):
    """Texts chosen by a function of the (B, T) scores (detached) that returns (B, K) text indices."""

    choose: Callable[[Tensor], Tensor] = field(repr=False)
    name = "selected"

    def columns(self, logits: Tensor) -> Tensor:
        return _checked(self.choose(logits.detach()), logits)


Pairs = Targets | str | Tensor | Callable[[Tensor], Tensor]


def top_k(k: int) -> TopK:
    """Pairs of each image with its k highest-scoring texts (e.g. the predicted class: `top_k(1)`)."""
    return TopK(k)


def as_targets(pairs: Pairs) -> Targets:
    """The targets of a public `pairs` argument: a Targets value, "all", "diagonal", a tensor of text indices or a
    function of the scores."""
    if isinstance(pairs, Targets):
        return pairs
    if isinstance(pairs, str):
        if pairs == "all":
            return AllPairs()
        if pairs == "diagonal":
            return Diagonal()
        raise NtlbError(f"unknown pairs '{pairs}': use 'all', 'diagonal', a (B, K) tensor of text indices or top_k(k)")
    if callable(pairs):
        return ByScores(pairs)
    return Columns(torch.as_tensor(pairs))


def _checked(columns: Tensor, logits: Tensor) -> Tensor:
    """A (B, K) long table of text indices on the logits' device, or a one-line error."""
    b, t = logits.shape
    columns = torch.as_tensor(columns, device=logits.device)
    if columns.ndim == 1:
        columns = columns[:, None]
    if columns.ndim != 2 or columns.shape[0] != b or columns.is_floating_point():
        raise NtlbError(f"pairs has shape {tuple(columns.shape)}: give ({b}, K) integer text indices, a row per image")
    if columns.numel() and (int(columns.min()) < 0 or int(columns.max()) >= t):
        raise NtlbError(f"pairs names text {int(columns.max())} but there are {t} texts: use indices 0..{t - 1}")
    return columns.long()


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

