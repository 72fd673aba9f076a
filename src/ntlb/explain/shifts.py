"""Image maps finer than the patch grid: the mean of an explainer's maps over copies of the image shifted by a
fraction of a patch, each map upsampled to the input and shifted back.

A ViT's map has one value per patch (8 x 8 pixels on the bundled model, 32 x 32 on ViT-B/32), so where inside a
patch the evidence lies is lost, and a bilinear upsampling peaks at the centre of the best patch whatever part of
it the object covers. Shifting the image by fractions of a patch moves the patch borders across the object; the
aligned average resolves the map to patch / shifts pixels (test-time augmentation, as pytorch-grad-cam's
`aug_smooth` averages over flips and scales). It costs one explanation per shift, shifts^2 of them, whatever the
patch size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..errors import NtlbError
from ..models.inputs import ImageFeatures, ImageInput, TextInput, prepare_images
from ..models.loading import wrap
from .explanation import Explanation
from .normalize import upsample
from .targets import Pairs

SHIFTS = 4  # per side of a patch: 16 explanations, a quarter patch apart (2 pixels on the bundled model)


def shifted(pixels: Tensor, dy: int, dx: int, margin: int) -> Tensor:
    """(..., H, W) moved down by dy and right by dx pixels (|dy|, |dx| <= margin; negative: up, left), edges
    replicated."""
    height, width = pixels.shape[-2:]
    padded = F.pad(pixels.reshape(-1, 1, height, width), (margin,) * 4, mode="replicate")
    moved = padded[..., margin - dy : margin - dy + height, margin - dx : margin - dx + width]
    return moved.reshape(pixels.shape)


def image_maps(explanation: Explanation) -> Tensor:
    """The explanation's (B, K, h, w) image maps."""
    return explanation.image


def offsets(cell: int, shifts: int) -> list[int]:
    """The shifts along one side of a `cell`-pixel patch: `shifts` whole pixels evenly spread below one patch."""
    return sorted({i * cell // shifts for i in range(shifts)})


def shift_averaged(explainer, model, images: ImageInput, texts: TextInput, pairs: Pairs = "all",
                   shifts: int = SHIFTS, read: Callable[[Explanation], Tensor] = image_maps) -> Tensor:
    """Maps at the input's size ((B, K, H, W) float32 for image maps): the mean over shifts (dy, dx), `shifts` per
    side of a patch, of the explainer's maps of the shifted image, aligned back to the original pixels. One shift
    gives the plain upsampled map. `read`: which patch maps of an explanation, (..., h, w) (for instance
    `lambda e: e.interactions`, every token's row)."""
    if isinstance(images, ImageFeatures):
        raise NtlbError("shift averaging moves the pixels: pass images (paths, PIL images or tensors), "
                        "not ImageFeatures")
    if isinstance(shifts, bool) or not isinstance(shifts, int) or shifts < 1:
        raise NtlbError(f"shifts {shifts!r}: use a whole number of shifts per side of a patch, at least 1 (1: none)")
    if not explainer.gives_image_maps:
        raise NtlbError(f"{explainer.name} gives no image maps: shift averaging needs an explainer that does")
    adapter = wrap(model)
    pixels, _ = prepare_images(adapter, images)
    size = tuple(pixels.shape[-2:])
    first = read(explainer(adapter, pixels, texts, pairs=pairs))
    cell = (size[0] // first.shape[-2], size[1] // first.shape[-1])  # one patch, in pixels
    moves = [(dy, dx) for dy in offsets(cell[0], shifts) for dx in offsets(cell[1], shifts)]
    margin = max(cell)
    total = upsample(first.float(), size)
    with tqdm(total=len(moves), initial=1, desc="shifts", unit="shift", leave=False, disable=len(moves) < 8) as bar:
        for dy, dx in moves[1:]:
            maps = read(explainer(adapter, shifted(pixels, dy, dx, margin), texts, pairs=pairs))
            total = total + shifted(upsample(maps.float(), size), -dy, -dx, margin)
            bar.update()
    return total / len(moves)
