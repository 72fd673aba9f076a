"""Image-guided essence transfer (Chefer, Benaim, Paiss & Wolf 2021, "semantic blending"): one latent direction b,
found by optimisation over a set of source latents, such that CLIP's embedding of G(z_s + b) moves towards the
target image's while each result stays close to its source. Additive in the generator's latent by construction; the
optimisation makes it additive in CLIP's space too (every source's CLIP shift points the same way).

`L = mean_s (1 - cos(E(G(z_s + b)), E(target))) + consistency x mean_{s != s'} (1 - cos(d_s, d_s'))
     + identity x mean_s (1 - cos(E(G(z_s + b)), E(G(z_s)))) + l2 x ||b||^2`,   d_s = E(G(z_s + b)) - E(G(z_s)).
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ...config.guidance import BlendConfig
from ...errors import NtlbError
from ...generators import picture_tensor
from ...io import write_bytes_atomic, write_record
from ...models.adapter import ClipAdapter
from .editing import _features, _latent_generator, start_latent, world_picture_notes
from .optimisation import optimise, to_picture


def _detected(image: Tensor) -> list[str]:
    """The labels the exact world detector finds in an image (3, H, W) in [0, 1]."""
    from ...world.detector import WorldDetector

    return [d.label for d in WorldDetector()(image)]


def blend_figure(sources: list, target, results: Tensor, found: dict, path: str | Path) -> None:
    """blend.png: one labelled row per source (the source, then its result, at the source's aspect), the target
    in the last row; each caption says what the world detector finds."""
    from ...viz.grid import picture_grid

    def shown(picture, like) -> Image.Image:
        picture = picture if isinstance(picture, Image.Image) else to_picture(picture[None] if picture.ndim == 3
                                                                              else picture)
        return picture.resize(like.size if isinstance(like, Image.Image) else picture.size, Image.BICUBIC)

    cells = []
    for index, (source, result) in enumerate(zip(sources, results)):
        cells.append((shown(source, source), f"source {index + 1}\nfinds: {', '.join(found['sources'][index]) or '-'}"))
        cells.append((shown(result, source), f"result {index + 1}\nfinds: {', '.join(found['results'][index]) or '-'}"))
    cells.append((shown(target, target), f"target\nfinds: {', '.join(found['target']) or '-'}"))
    picture_grid(cells, 2, path, title="essence transfer: each source (left) and its result (right)")


def essence_loss(features: Tensor, goal: Tensor, own: Tensor, config: BlendConfig,
                 direction: Tensor | None = None) -> tuple[Tensor, dict]:
    """Essence transfer's loss per picture (the module's formula, each term divided by the number of sources so
    that the sum is the mean over sources) and its parts' means: `features` (N, D) of the results, N a multiple of
    the sources' count (a sampling generator draws k per source, source-major), `goal` (1, D) the target's and
    `own` (S, D) the sources' unit features; the l2 on `direction` is left out where it is None. Public so that a
    benchmark can score hand-made outcomes under the very loss the optimisation descends."""
    transfer = 1 - (features @ goal.T)[:, 0]
    source = own.repeat_interleave(len(features) // len(own), dim=0)
    keep = 1 - (features * source).sum(dim=-1)
    shifts = F.normalize(features - source, dim=-1)
    pairs = shifts @ shifts.T
    count = len(features)
    consistency = (1 - pairs).sum(dim=1) / max(count - 1, 1)  # each picture's disagreement with the others
    l2 = config.l2 * direction.pow(2).sum() if direction is not None else 0.0
    total = (transfer + config.consistency * consistency + config.identity * keep + l2) / len(own)
    return total, {"transfer": float(transfer.detach().mean()), "identity": float(keep.detach().mean()),
                   "consistency": float(consistency.detach().mean())}


class ShiftedLatents(nn.Module):
    """G(z_s + b) for fixed source latents z_s and one learned direction b."""

    def __init__(self, generator: nn.Module, sources: Tensor):
        super().__init__()
        self.generator = generator.requires_grad_(False)
        self.register_buffer("sources", sources)
        self.direction = nn.Parameter(torch.zeros_like(sources[:1]))

    def forward(self) -> Tensor:
        return self.generator.image_of(self.sources + self.direction)

    @property
    def log_prob(self) -> Tensor | None:
        """The log-probabilities of a sampling generator's last pictures (None for the others)."""
        return getattr(self.generator, "log_prob", None)

    @property
    def samples(self) -> int:
        return getattr(self.generator, "samples", 1)


def blend(adapter: ClipAdapter, generator: nn.Module, sources: list[Image.Image | Tensor], target: Image.Image | Tensor,
          out: str | Path, config: BlendConfig, progress: bool = True) -> dict:
    """Find the direction that carries the target's essence onto every source (what `ntlb blend` runs); resumes.
    Writes blend.png (sources above their results, the target at the end), direction.pt and metrics.json.
    Returns the metrics with the results under "images"."""
    _latent_generator(generator, "essence transfer")
    if not sources:
        raise NtlbError("no source images: give at least one SOURCE")
    notes = world_picture_notes(generator, [*sources, target])
    out = Path(out)
    size = tuple(generator.size)
    dtype = next(generator.parameters()).dtype
    pictures = torch.cat([picture_tensor(p, size) for p in sources]).to(adapter.device, dtype)
    latents = torch.cat([start_latent(generator, picture[None], config.invert_steps) for picture in pictures])
    shifted = ShiftedLatents(generator, latents)
    with torch.no_grad():
        goal = F.normalize(_features(adapter, picture_tensor(target, size).to(adapter.device, dtype)), dim=-1)
        starts = generator.image_of(latents)
        own = F.normalize(_features(adapter, starts), dim=-1)

    def loss(images: Tensor, step: int) -> tuple[Tensor, dict]:
        features = F.normalize(_features(adapter, images), dim=-1)
        return essence_loss(features, goal, own, config, shifted.direction)

    images, _ = optimise(shifted, loss, out, "blend", {**asdict(config), "sources": len(sources)}, config.steps,
                         config.lr, config.seed, config.snapshot_every, desc="essence transfer", progress=progress)
    found = {"target": _detected(picture_tensor(target, size)[0]), "sources": [_detected(p) for p in pictures],
             "results": [_detected(r) for r in images]}
    blend_figure(sources, target, images, found, out / "blend.png")
    buffer = io.BytesIO()
    torch.save({"direction": shifted.direction.detach().cpu()}, buffer)
    write_bytes_atomic(out / "direction.pt", buffer.getvalue())
    with torch.no_grad():
        after = F.normalize(_features(adapter, images), dim=-1)
    metrics = {"sources": len(sources), "cos_to_target_before": (own @ goal.T)[:, 0].tolist(),
               "cos_to_target_after": (after @ goal.T)[:, 0].tolist(),
               "cos_to_source_after": (after * own).sum(dim=-1).tolist(), "world_detector": found, "notes": notes}
    metrics = write_record(out / "metrics.json", metrics, adapter, config)
    return {**metrics, "images": images.detach(), "starts": starts}
