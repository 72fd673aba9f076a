"""Detector boxes against the layout's boxes (paper Table 3): COCO AP, AP@0.5 and AR@100 from pycocotools."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, end exclusive


def _xywh(box: Box) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def detection_scores(truth: Sequence[Sequence[tuple[Box, str]]],
                     detections: Sequence[Sequence[tuple[Box, str, float]]]) -> dict[str, float]:
    """AP (IoU 0.5:0.95), AP50 and AR (100 detections) over images; per image, the true (box, label) pairs and the
    detected (box, label, score) triples. Labels that no true box has are not evaluated, as in COCO."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels = sorted({label for image in truth for _, label in image})
    category = {label: index + 1 for index, label in enumerate(labels)}
    annotations = []
    for i, image in enumerate(truth):
        for box, label in image:
            x, y, w, h = _xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category[label],
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    results = [{"image_id": i + 1, "category_id": category[label], "bbox": _xywh(box), "score": float(score)}
               for i, image in enumerate(detections) for box, label, score in image if label in category]
    if not annotations or not results:
        return {"AP": 0.0, "AP50": 0.0, "AR": 0.0}
    ground = COCO()
    ground.dataset = {"images": [{"id": i + 1} for i in range(len(truth))], "annotations": annotations,
                      "categories": [{"id": c, "name": label} for label, c in category.items()]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports on stdout
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [max(0.0, float(v)) for v in evaluation.stats]  # -1 (nothing to evaluate) counts as 0
    return {"AP": stats[0], "AP50": stats[1], "AR": stats[8]}
