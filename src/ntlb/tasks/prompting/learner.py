"""Learned prompts (CoOp): context vectors v_1..v_M around each class name; CLIP itself stays frozen.

`t(c) = [SOT] v_1..v_M [class tokens] [.] [EOT]` with the class name at the "end", in the "middle" (after
v_{M/2}) or at the "front"; one set of vectors for all classes (unified) or one per class (CSC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...config.prompts import POSITIONS
from ...errors import NtlbError
from ...models.adapter import ClipAdapter, Encoded
from ...models.inputs import Prompts
from ...models.tokenizer import TokenizedTexts, Word

PLACEHOLDER = "X"  # a token whose embedding is replaced by a learned vector


@dataclass
class PromptLayout:
    """Token ids of every class prompt (placeholders where the vectors go), cut to the longest prompt."""

    ids: Tensor  # (C, L)
    eot: Tensor  # (C,)
    context: Tensor  # (C, M) positions of v_1..v_M
    names: Tensor  # (C, L) bool: positions of the class name's tokens


def prompt_layout(adapter: ClipAdapter, classnames: Sequence[str], n_ctx: int, position: str) -> PromptLayout:
    """Where the context vectors and the class name sit in each class's prompt."""
    if len(classnames) == 0:
        raise NtlbError("empty class list: give at least one class name")
    if position not in POSITIONS:
        raise NtlbError(f"unknown class-name position '{position}': use one of {', '.join(POSITIONS)}")
    if n_ctx < 1:
        raise NtlbError(f"--ctx {n_ctx}: use at least one context vector")
    if not hasattr(adapter.tokenizer, "bpe"):
        held = getattr(adapter.tokenizer, "tokenizer", adapter.tokenizer)
        raise NtlbError(f"prompt learning builds its prompts from CLIP's BPE tokens and this model's tokenizer is "
                        f"{type(held).__name__}: use a model with CLIP's tokenizer")
    bpe = adapter.tokenizer.bpe
    placeholder = bpe.encode(PLACEHOLDER)[0]
    dot = bpe.encode(".")
    rows, contexts, name_spans = [], [], []
    half = n_ctx // 2
    for name in classnames:
        name_ids = bpe.encode(name)
        if not name_ids:
            raise NtlbError(f"class name {name!r} has no tokens: give every class a name")
        ctx = [placeholder] * n_ctx
        if position == "end":
            body, ctx_start, name_start = ctx + name_ids, 1, 1 + n_ctx
        elif position == "middle":
            body, ctx_start, name_start = ctx[:half] + name_ids + ctx[half:], 1, 1 + half
        else:
            body, ctx_start, name_start = name_ids + ctx, 1 + len(name_ids), 1
        ids = [adapter.tokenizer.sot_id, *body, *dot, adapter.tokenizer.eot_id]
        if len(ids) > adapter.context_length:
            raise NtlbError(f"the prompt for class {name!r} has {len(ids)} tokens but the model's context is "
                            f"{adapter.context_length}: use fewer context vectors (--ctx) or a shorter name")
        if position == "middle":
            positions = list(range(1, 1 + half)) + list(range(1 + half + len(name_ids), 1 + n_ctx + len(name_ids)))
        else:
            positions = list(range(ctx_start, ctx_start + n_ctx))
        rows.append(ids)
        contexts.append(positions)
        name_spans.append((name_start, name_start + len(name_ids)))
    # towers that see every position (MobileCLIP-S, CoCa) read the prompts padded to the full context, as trained
    length = adapter.context_length if adapter.tokenizer.fixed_length else max(len(r) for r in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    names = torch.zeros(len(rows), length, dtype=torch.bool)
    for row, (tokens, (start, end)) in enumerate(zip(rows, name_spans)):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        names[row, start:end] = True
    eot = torch.tensor([len(r) - 1 for r in rows])
    return PromptLayout(ids, eot, torch.tensor(contexts), names)


def prompt_tokens(adapter: ClipAdapter, layout: PromptLayout) -> TokenizedTexts:
    """The prompts' tokens and words, each context vector a word of its own named v1..vM (SPEC section 3)."""
    tokens = adapter.tokenizer.from_ids(layout.ids)
    for c, context in enumerate(layout.context.tolist()):
        names = {position: f"v{i + 1}" for i, position in enumerate(context)}
        tokens.tokens[c] = [names.get(p, piece) for p, piece in enumerate(tokens.tokens[c])]
        tokens.words[c] = [Word(names[w.start], w.start, w.end) if w.start in names else w for w in tokens.words[c]]
    return tokens


class PromptLearner(nn.Module):
    """The learned context vectors of every class prompt; `forward()` gives the prompts' token embeddings."""

    def __init__(self, adapter: ClipAdapter, classnames: Sequence[str], n_ctx: int = 16, position: str = "end",
                 csc: bool = False, init: str | None = None, seed: int = 0):
        super().__init__()
        base_ids = None
        if init:
            base_ids = adapter.tokenizer.bpe.encode(init)
            n_ctx = len(base_ids)
        self.layout = prompt_layout(adapter, classnames, n_ctx, position)
        self.tokens = prompt_tokens(adapter, self.layout)
        self.classnames, self.n_ctx, self.position, self.csc, self.init = list(classnames), n_ctx, position, csc, init
        with torch.no_grad():
            embeddings = adapter.embed_tokens(self.layout.ids.to(adapter.device)).float()
            if base_ids is not None:
                start = adapter.embed_tokens(torch.tensor(base_ids, device=adapter.device)).float()
            else:
                generator = torch.Generator().manual_seed(seed)
                start = torch.randn(n_ctx, embeddings.shape[-1], generator=generator).to(adapter.device) * 0.02
        self.register_buffer("token_embeddings", embeddings, persistent=False)
        count = len(classnames)
        self.ctx = nn.Parameter(start.expand(count, -1, -1).clone() if csc else start.clone())

    def forward(self) -> Tensor:
        """(C, L, width) token embeddings with the context vectors in place, float32."""
        count = self.token_embeddings.shape[0]
        ctx = self.ctx if self.csc else self.ctx.expand(count, -1, -1)
        rows = torch.arange(count, device=ctx.device)[:, None]
        embeddings = self.token_embeddings.clone()
        embeddings[rows, self.layout.context.to(ctx.device)] = ctx
        return embeddings

    def prompts(self) -> Prompts:
        """Every class prompt as an explainer input: token embeddings with the vectors in place, and words."""
        return Prompts(self.tokens, self())

    def encode(self, adapter: ClipAdapter) -> Encoded:
        """Text features of every class prompt (differentiable in the context vectors)."""
        return adapter.encode_text(self.layout.ids, self.layout.eot, embeddings=self())

    def nearest_words(self, adapter: ClipAdapter, k: int = 1) -> list[list[str]]:
        """For each context vector (per class with CSC), the vocabulary words nearest in embedding space."""
        with torch.no_grad():
            table = adapter.embed_tokens(torch.arange(adapter.tokenizer.vocab_size, device=adapter.device)).float()
            vectors = self.ctx.reshape(-1, self.ctx.shape[-1]).float()
            nearest = torch.cdist(vectors, table).topk(k, largest=False).indices
        decoder = adapter.tokenizer.bpe.decoder
        words = [" / ".join(decoder[int(i)].replace("</w>", "") for i in row) for row in nearest]
        return [words[i : i + self.n_ctx] for i in range(0, len(words), self.n_ctx)]
