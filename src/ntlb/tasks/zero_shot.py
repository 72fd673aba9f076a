"""Zero-shot classification: class prompts -> text features -> nearest class for each image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..errors import NtlbError
from ..explain.inputs import ImageInput, prepare_images
from ..models.adapter import ClipAdapter


@torch.no_grad()
def text_classifier(adapter: ClipAdapter, names: Sequence[str], templates: Sequence[str] = ("a {}",)) -> Tensor:
    """(C, D) normalised class embeddings; several templates are averaged (a prompt ensemble)."""
    if len(names) == 0:
        raise NtlbError("empty class list: give at least one class name")
    features = []
    for template in templates:
        tokens = adapter.tokenizer([template.format(name) for name in names]).truncated()
        features.append(F.normalize(adapter.encode_text(tokens.ids, tokens.eot).features.float(), dim=-1))
    return F.normalize(torch.stack(features).mean(dim=0), dim=-1)


@torch.no_grad()
def encode_images(adapter: ClipAdapter, images: Sequence | ImageInput, batch_size: int = 64) -> Tensor:
    """(N, D) normalised image features, in batches with a progress bar for long lists."""
    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    out = []
    for chunk in tqdm(chunks, desc="encoding", unit="batch", disable=len(chunks) < 4):
        pixels, _ = prepare_images(adapter, chunk)
        out.append(F.normalize(adapter.encode_image(pixels).features.float(), dim=-1))
    return torch.cat(out)


def classify(image_features: Tensor, classifier: Tensor) -> Tensor:
    """Predicted class index of each image."""
    return (image_features @ classifier.T).argmax(dim=1)
