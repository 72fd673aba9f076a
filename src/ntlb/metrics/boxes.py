"""Relevance maps against boxes (paper Table 3): Otsu-binarised map, precision, recall and F1."""

from __future__ import annotations

from torch import Tensor

from .localization import otsu_mask


def precision_recall_f1(predicted: Tensor, target: Tensor) -> tuple[float, float, float]:
    """Pixel precision, recall and F1 of a boolean map against a boolean mask (0 where undefined)."""
    predicted, target = predicted.bool(), target.bool()
    hits = float((predicted & target).sum())
    precision = hits / float(predicted.sum()) if predicted.any() else 0.0
    recall = hits / float(target.sum()) if target.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def otsu_box_scores(relevance_map: Tensor, box_mask: Tensor) -> tuple[float, float, float]:
    """Precision, recall, F1 of a map binarised with Otsu's threshold against its box (same size)."""
    return precision_recall_f1(otsu_mask(relevance_map.detach().float()), box_mask)


def box_iou(first: tuple[float, float, float, float], second: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (exclusive ends); 0 for boxes that do not meet."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1])
    return inter / (area - inter)
