"""The one way ntlb turns texts and images into CLIP features (normalised), in batches; and the precision that
features and relevance are accumulated in."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..errors import NtlbError
from .adapter import ClipAdapter
from .tokenizer import without_words


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, the input's own dtype when wider (float64 tests)."""
    return torch.promote_types(dtype, torch.float32)


def _normalised(features: Tensor) -> Tensor:
    return F.normalize(features.to(accumulation_dtype(features.dtype)), dim=-1)


@torch.no_grad()
def text_features(adapter: ClipAdapter, texts: Sequence[str], templates: Sequence[str] = ("{}",),
                  batch_size: int = 256, allow_empty: bool = False) -> Tensor:
    """(T, D) normalised features of `texts`; with several templates ("a photo of a {}."), the normalised mean
    of each text's templated features (a prompt ensemble). `allow_empty`: empty texts are encoded too (start and
    end tokens only), as a text whose only word was deleted is."""
    if len(texts) == 0:
        raise NtlbError("empty class list: give at least one class name")
    if hasattr(adapter.tokenizer, "refuse"):  # wrapped without its tokenizer: ids only
        adapter.tokenizer.refuse()
    per_template = []
    for template in templates:
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = adapter.tokenizer([template.format(t) for t in texts[start : start + batch_size]],
                                       allow_empty=allow_empty).truncated()
            chunks.append(_normalised(adapter.encode_text(tokens.ids, tokens.eot).features))
        per_template.append(torch.cat(chunks))
    features = per_template[0] if len(per_template) == 1 else torch.stack(per_template).mean(dim=0)
    return F.normalize(features, dim=-1)


def features_without_words(adapter: ClipAdapter, texts: Sequence[str],
                           words: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor]:
    """Normalised features of the texts followed by each text without each of its chosen words, and the (T, W)
    index of text t without word w among them (`without_words`): what a word adds to a score is the difference."""
    shortened, index = without_words(list(texts), words, adapter.tokenizer)
    return text_features(adapter, shortened, allow_empty=True), index


@torch.no_grad()
def image_features(adapter: ClipAdapter, images: Sequence | Tensor | Dataset, batch_size: int = 64,
                   workers: int = 0, desc: str = "encoding images") -> Tensor:
    """(N, D) normalised image features (on the model's device) of paths or PIL images, preprocessed pixels
    (N, 3, H, W), or a torch Dataset whose items are pixels or (pixels, label) pairs; a progress bar for long
    inputs."""
    from .inputs import prepare_images

    from_dataset = isinstance(images, Dataset)
    if from_dataset:
        batches = DataLoader(images, batch_size=batch_size, num_workers=workers)
    else:
        batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    out = []
    for batch in tqdm(batches, desc=desc, unit="batch", disable=len(batches) < 4):
        if from_dataset:
            pixels = batch[0] if isinstance(batch, (list, tuple)) else batch
        else:
            pixels = prepare_images(adapter, batch)[0]
        out.append(_normalised(adapter.encode_image(pixels).features))
    if not out:
        raise NtlbError("no images given: pass at least one image")
    return torch.cat(out)
