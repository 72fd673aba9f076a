"""Retrieval recall, with items that share a caption counted as equally right."""

from __future__ import annotations

from torch import Tensor


def recall_at_1(scores: Tensor, keys: list[str]) -> tuple[float, float]:
    """(image->text, text->image) R@1 of a square (images x texts) score matrix; pair i is image i, text i.

    A retrieved item is right when its caption equals the query's (`keys`), since generated captions repeat.
    """
    same = [[a == b for b in keys] for a in keys]
    image_to_text = scores.argmax(dim=1).tolist()
    text_to_image = scores.argmax(dim=0).tolist()
    i2t = sum(same[i][j] for i, j in enumerate(image_to_text)) / len(keys)
    t2i = sum(same[j][i] for j, i in enumerate(text_to_image)) / len(keys)
    return i2t, t2i
