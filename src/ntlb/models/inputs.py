"""Turn what users pass into model inputs: paths, PIL images or tensors; strings or token ids; and the two
inputs that skip an encoder: features computed beforehand, and texts given as token embeddings (learned
prompt vectors in place)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ..errors import NtlbError
from ..io import load_image
from .adapter import ClipAdapter
from .tokenizer import TokenizedTexts


@dataclass
class ImageFeatures:
    """Image features (B, D) computed beforehand: the images are scored but not explained (no image maps)."""

    features: Tensor


@dataclass
class TextFeatures:
    """Text features (T, D) computed beforehand: the texts are scored but not explained (no text relevance)."""

    features: Tensor


@dataclass
class Prompts:
    """Texts given as token embeddings (T, L, width) beside their token ids and words: learned context vectors
    (CoOp) sit in place of placeholder tokens, and gradients reach them through the text encoder."""

    tokens: TokenizedTexts
    embeddings: Tensor


ImageInput = Tensor | Image.Image | str | Path | Sequence[Image.Image | str | Path] | ImageFeatures
TextInput = str | Sequence[str] | Tensor | TokenizedTexts | TextFeatures | Prompts


def prepare_images(adapter: ClipAdapter, images: ImageInput) -> tuple[Tensor, list[Image.Image] | None]:
    """Preprocessed pixels (B, 3, H, W) and, when given as files or PIL images, the original pictures."""
    if isinstance(images, Tensor):
        pixels = images.unsqueeze(0) if images.ndim == 3 else images
        if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[0] == 0:
            raise NtlbError(f"image tensor has shape {tuple(images.shape)}: pass (B, 3, H, W) preprocessed images")
        return pixels, None
    if isinstance(images, (str, Path, Image.Image)):
        images = [images]
    if len(images) == 0:
        raise NtlbError("no images given: pass at least one image")
    originals = [item.convert("RGB") if isinstance(item, Image.Image) else load_image(item) for item in images]
    pixels = torch.stack([adapter.preprocess(image) for image in originals])
    return pixels, originals


def prepare_texts(adapter: ClipAdapter, texts: str | Sequence[str] | Tensor | TokenizedTexts) -> TokenizedTexts:
    """Tokenised texts with word spans; token-id tensors are read back into tokens and words."""
    if isinstance(texts, TokenizedTexts):
        return texts
    if isinstance(texts, Tensor):
        return adapter.tokenizer.from_ids(texts)
    if hasattr(adapter.tokenizer, "refuse"):  # wrapped without its tokenizer: ids only
        adapter.tokenizer.refuse()
    return adapter.tokenizer(texts)
