"""Which region each word matches, read from what the word adds to the score.

Deleting a word w from a text T changes the score by s(I, T) - s(I, T \\ w) = scale <f(I)/|f(I)|, v>, with v the
difference of the two normalised text features: a linear functional of the image feature. Any image explainer run
against the direction v (as `TextFeatures`, scored against v / |v|: a positive scale per word) maps where the image
supports that word *in this caption*. On two-object world scenes these maps point each colour and shape word into
its own object; the token x patch interactions' word maps do so less often (docs/results-explainers.md, "Word maps
on the world"). By default the maps are shift-averaged (`shifts.py`): a shape word's evidence peaks in a patch its
object only partly covers, which a patch-grid map cannot place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import NtlbError
from ..models.features import features_without_words, image_features
from ..models.inputs import ImageInput, TextFeatures, prepare_images
from ..models.loading import wrap
from .shifts import SHIFTS, shift_averaged


def _directions(adapter, images: ImageInput, texts: Sequence[str],
                words: Sequence[Sequence[str]]) -> tuple[Tensor, list[int], Tensor]:
    """The checked pixels, the image of each chosen word, and each word's direction v (T minus T without the
    word, normalised features)."""
    pixels, _ = prepare_images(adapter, images)
    if isinstance(texts, str):
        raise NtlbError(f"texts is one string: give a list of texts, one per image ([{texts!r}] for one image)")
    if len(texts) != len(pixels):
        raise NtlbError(f"{len(texts)} text(s) for {len(pixels)} image(s): give one text per image")
    features, index = features_without_words(adapter, texts, words)
    owners = [b for b, chosen in enumerate(words) for _ in chosen]
    if not owners:
        raise NtlbError("no words given: choose at least one word of a text")
    return pixels, owners, features[owners] - features[index[index >= 0]]


def word_contribution_maps(explainer, model, images: ImageInput, texts: Sequence[str],
                           words: Sequence[Sequence[str]], shifts: int = SHIFTS) -> list[Tensor]:
    """For image b and its text texts[b]: a (len(words[b]), H, W) float32 stack, the map of what each chosen word
    adds to the pair's score, at the input's size. shifts: per side of a patch, of the shift-averaged map (1: the
    explainer's plain map, upsampled)."""
    if not explainer.gives_image_maps:
        raise NtlbError(f"{explainer.name} gives no image maps: a word's region needs an explainer that does")
    adapter = wrap(model)
    pixels, owners, directions = _directions(adapter, images, texts, words)
    maps = shift_averaged(explainer, adapter, pixels[owners], TextFeatures(directions), pairs="diagonal",
                          shifts=shifts)
    return list(maps[:, 0].split([len(chosen) for chosen in words]))


@torch.no_grad()
def word_score_drops(model, images: ImageInput, texts: Sequence[str],
                     words: Sequence[Sequence[str]]) -> list[Tensor]:
    """For image b and its text texts[b]: (len(words[b]),) float32, what each chosen word adds to the pair's cosine
    score (the score with the text minus without the word): the number the word's map explains. A word the
    picture lacks adds little or lowers the score."""
    adapter = wrap(model)
    pixels, owners, directions = _directions(adapter, images, texts, words)
    drops = (image_features(adapter, pixels)[owners] * directions).sum(dim=-1)
    return list(drops.float().split([len(chosen) for chosen in words]))
