"""How much memory a gradient explanation needs, and how to split it to fit a budget.

The peak of a batched explanation is the autograd graph of every image and text it encodes, the transient
gradients of one backward pass, and the attention gradients of the targets taken together. A pair's relevance
depends only on its own image and text, so the B x T grid of pairs can be cut into tiles (a group of images x
a group of texts) and each tile explained on its own with identical numbers; within a tile, gradient targets go
in chunks. `plan_tiles` picks the largest tiles and chunks whose estimate fits the budget (`memory_budget`: the
user's, else half the memory available), and the plan re-checks the free memory before each further gradient call
(`Plan.chunk_now`). `texts_per_call` is the same planner for a trainer's text chunks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import torch

from ..errors import NtlbError
from ..models.adapter import ClipAdapter

# Peak bytes per saved-graph byte, fitted to the peaks of calls in fresh processes on ViT-B/32 (CPU,
# docs/benchmarks.md): an image group's graph, a text group's graph freed by its one backward, and one that serves
# several rounds (a text explained for several images); plus what a first call costs whatever its size (the cost
# probe, lazily loaded kernels, the allocator's first arenas).
IMAGE_GRAPH_FACTOR = 1.5
TEXT_GRAPH_FACTOR = 6.5
KEPT_TEXT_GRAPH_FACTOR = 13.0
FIXED = 60 * 2**20
DEFAULT_SHARE = 0.5  # of the memory available when the call starts


def parse_memory(value: str | int | float | None) -> int | None:
    """Bytes from 8e9, "8GB", "512MiB", "2G" (None stays None)."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else int(value)
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(float(text))
    except ValueError:
        raise NtlbError(f"memory budget '{value}': give bytes or a size such as 6GB or 512MiB") from None


def available_memory(device: torch.device) -> int:
    """Free memory on `device` now: CUDA's free memory, or the system's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def memory_budget(max_memory: int | None, device: torch.device) -> int:
    """The bytes a call may use: the user's budget, else DEFAULT_SHARE of the memory available now."""
    return max_memory or int(DEFAULT_SHARE * available_memory(device))


@dataclass(frozen=True)
class Costs:
    """Bytes per unit of work, measured once per model: the saved graph of one image and of one text token, and
    the attention gradients one target adds per image and per text (with its length)."""

    image_graph: float
    token_graph: float
    image_attention: float
    text_attention_per_token2: float
    image_layers: int
    text_layers: int


def _saved_bytes(adapter: ClipAdapter, forward) -> float:
    """Bytes the autograd graph of `forward()` saves, counting each storage once and no parameter."""
    parameters = {p.untyped_storage().data_ptr() for p in adapter.model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return float(sum(seen.values()))


_MEASURED: dict[tuple, Costs] = {}


def measure_costs(adapter: ClipAdapter, keep_image: int | None, keep_text: int | None) -> Costs:
    """One small forward of each tower under a saved-tensor hook (once per model, layers, dtype and device)."""
    key = (id(adapter.model), keep_image, keep_text, adapter.dtype, str(adapter.device))
    if key not in _MEASURED:
        if len(_MEASURED) > 32:
            _MEASURED.clear()
        _MEASURED[key] = _measure(adapter, keep_image, keep_text)
    return _MEASURED[key]


def _measure(adapter: ClipAdapter, keep_image: int | None, keep_text: int | None) -> Costs:
    size = adapter.preprocess_config.size
    image_graph, image_attention, image_layers = 0.0, 0.0, 0
    if adapter.has_patch_attention:
        pixels = torch.zeros(1, 3, *size, device=adapter.device, dtype=adapter.dtype)
        image_graph = _saved_bytes(adapter, lambda: adapter.encode_image(pixels, keep_from=keep_image))
        h, w = adapter.grid_size
        image_layers = len(adapter.image_blocks) - (keep_image or 0) if keep_image is not None else 0
        heads = adapter.image_blocks[0].heads
        image_attention = 8.0 * image_layers * heads * (1 + h * w) ** 2  # float32 gradient and G * A
    tokens = adapter.tokenizer(["a photo of a thing"]).truncated()
    length = tokens.ids.shape[1]
    token_graph = _saved_bytes(adapter, lambda: adapter.encode_text(tokens.ids, tokens.eot, keep_from=keep_text))
    text_layers = len(adapter.text_blocks) - (keep_text or 0) if keep_text is not None else 0
    heads = adapter.text_blocks[0].heads
    return Costs(image_graph, token_graph / length, image_attention, 8.0 * text_layers * heads,
                 image_layers, text_layers)


@dataclass(frozen=True)
class Plan:
    """Images and texts per tile, and gradient targets per call on each side (image slots, text rounds)."""

    image_group: int
    text_group: int
    image_chunk: int
    text_chunk: int
    estimate: float  # bytes
    image_target: float = field(default=0.0, compare=False)  # bytes one more image-side target adds to a call
    text_target: float = field(default=0.0, compare=False)  # and one more text-side target (round)

    def chunk_now(self, tower: str, size: int, device: torch.device) -> int:
        """Targets for the next gradient call of `tower`: `size`, halved while that call's targets would need more
        than the memory available now (re-checked between calls: other processes may have grown since the plan;
        the graphs already held are counted as used). At least 1."""
        per_target = self.image_target if tower == "image" else self.text_target
        if size <= 1 or per_target <= 0:
            return size
        free = available_memory(device)
        while size > 1 and size * per_target > free:
            size = math.ceil(size / 2)
        return size


def estimate(costs: Costs, images: int, texts: int, length: int, image_chunk: int, text_chunk: int,
             text_rounds: int = 1) -> float:
    """Estimated peak bytes of one tile: its graphs (with the backward's transients; a text graph that serves
    `text_rounds` > 1 rounds costs more) and the targets' gradients, whose vmapped backward also holds one layer's
    activations per target."""
    text_factor = KEPT_TEXT_GRAPH_FACTOR if text_rounds > 1 else TEXT_GRAPH_FACTOR
    graphs = (FIXED + IMAGE_GRAPH_FACTOR * images * costs.image_graph
              + text_factor * texts * length * costs.token_graph)
    image_side = image_chunk * images * (costs.image_attention + costs.image_graph / max(costs.image_layers, 1))
    text_side = text_chunk * texts * length * (costs.text_attention_per_token2 * length
                                               + costs.token_graph / max(costs.text_layers, 1))
    return graphs + image_side + text_side


def plan_tiles(costs: Costs, images: int, texts: int, length: int, slots: int | None, budget: int,
               tiles: bool = True) -> Plan:
    """The largest tiles and chunks that fit `budget` for `images` x `texts` (texts of `length` tokens), each image
    explained with `slots` texts (None: with every text of its tile). The biggest term of the estimate is halved
    first (chunks cost a little speed, tiles a re-encoding of the texts per image group); `tiles=False` shrinks
    the chunks only. One pair per tile and one target per call is the floor: a budget below it is exceeded, not
    refused."""
    size = {"images": images, "texts": texts, "image_chunk": texts if slots is None else slots,
            "text_chunk": images}

    def fitted() -> tuple[int, int]:  # targets per call cannot exceed the targets a tile has
        image_targets = size["texts"] if slots is None else slots
        return min(size["image_chunk"], image_targets), min(size["text_chunk"], size["images"])

    def need() -> float:
        rounds = size["images"]  # at most: a text explained with every image of the tile
        return estimate(costs, size["images"], size["texts"], length, *fitted(), text_rounds=rounds)

    while need() > budget:
        image_chunk, text_chunk = fitted()
        terms = {
            "image_chunk": (image_chunk, image_chunk * size["images"] * costs.image_attention),
            "text_chunk": (text_chunk, text_chunk * size["texts"] * costs.text_attention_per_token2 * length**2),
            "texts": (size["texts"], size["texts"] * length * costs.token_graph),
            "images": (size["images"], size["images"] * costs.image_graph),
        }
        shrinkable = {name: term for name, (value, term) in terms.items()
                      if value > 1 and (tiles or name.endswith("chunk"))}
        if not shrinkable:
            break
        name = max(shrinkable, key=shrinkable.get)
        size[name] = math.ceil(terms[name][0] / 2)
    image_target = size["images"] * (costs.image_attention + costs.image_graph / max(costs.image_layers, 1))
    text_target = size["texts"] * length * (costs.text_attention_per_token2 * length
                                            + costs.token_graph / max(costs.text_layers, 1))
    return Plan(size["images"], size["texts"], *fitted(), need(), image_target, text_target)


def texts_per_call(adapter: ClipAdapter, images: int, texts: int, length: int, keep_text: int | None,
                   max_memory: int | None = None) -> int:
    """The most of `texts` texts (of `length` tokens, attention kept from layer `keep_text`; None: no relevance)
    that one backward may hold beside `images` images given as features, within `max_memory` bytes (default: half
    the memory available now): the class chunks of a trainer whose explainer reads image features."""
    costs = replace(measure_costs(adapter, None, keep_text), image_graph=0.0, image_attention=0.0)
    return plan_tiles(costs, images, texts, length, None, memory_budget(max_memory, adapter.device)).text_group
