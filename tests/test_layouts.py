"""Layout pieces of Algorithm 1 on hand-computed cases: Dice (both variants), box weights, Otsu P/R/F1 against
boxes, the JSON format and its errors, and the paper's 50% filter on real COCO annotations."""

import json
import math

import pytest
import torch
from conftest import SHARED

from ntlb.errors import NtlbError
from ntlb.losses import box_weights, dice, soft_relevance_mask
from ntlb.metrics.boxes import otsu_box_scores, precision_recall_f1
from ntlb.tasks.layouts import Layout, coco_layout, largest_boxes_under, random_world_layout, read_layout, write_layout

COCO = SHARED / "data" / "coco100" / "instances_val2017.json"


def test_dice_both_variants_by_hand():
    soft = torch.tensor([[1.0, 0.5], [0.0, 0.5]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # overlap 1.5, sum b 2, sum m 3, b outside m 0.5
    assert float(dice(soft, mask, "paper")) == pytest.approx(2 * 1.5 / (2 + 3))
    assert float(dice(soft, mask, "released")) == pytest.approx(2 * 1.5 / (2 * 1.5 + 0.5))
    with pytest.raises(NtlbError, match="Dice variant"):
        dice(soft, mask, "other")


def test_soft_mask_and_weights_by_hand():
    relevance = torch.tensor([[0.0, 2.0], [0.2, 1.0]])
    soft = soft_relevance_mask(relevance, threshold=0.1, temperature=20)
    expected = torch.sigmoid((torch.tensor([[0.0, 1.0], [0.1, 0.5]]) - 0.1) * 20)
    assert torch.allclose(soft, expected)
    assert box_weights([0.25, 0.01]).tolist() == pytest.approx([0.15 / 0.5, 0.15 / 0.1])


def test_otsu_precision_recall_f1_against_a_box():
    relevance = torch.zeros(4, 4)
    relevance[0:2, 0:3] = 1.0  # 6 pixels on, Otsu keeps them
    box = torch.zeros(4, 4, dtype=torch.bool)
    box[0:2, 1:4] = True  # 6 pixels, 4 shared
    precision, recall, f1 = otsu_box_scores(relevance, box)
    assert (precision, recall) == (pytest.approx(4 / 6), pytest.approx(4 / 6))
    assert f1 == pytest.approx(4 / 6)
    assert precision_recall_f1(torch.zeros(2, 2), box[:2, :2]) == (0.0, 0.0, 0.0)


def test_layout_json_round_trip_and_errors(tmp_path):
    layout = Layout(64, 48, [(0, 0, 32, 24), (40, 10, 64, 48)], ["a photo of a red circle", "a photo of a dog"])
    path = write_layout(layout, tmp_path / "layout.json")
    again = read_layout(path)
    assert again == layout
    masks = again.masks()
    assert masks.shape == (2, 48, 64) and float(masks[0].sum()) == 32 * 24
    assert again.area_ratios()[0] == pytest.approx(0.25)
    with pytest.raises(NtlbError, match="outside the 64x48 image"):
        Layout(64, 48, [(0, 0, 70, 10)], ["x"])
    with pytest.raises(NtlbError, match="one text per box"):
        Layout(64, 48, [(0, 0, 10, 10)], [])
    (tmp_path / "bad.json").write_text(json.dumps({"width": 10}))
    with pytest.raises(NtlbError, match="cannot read layout"):
        read_layout(tmp_path / "bad.json")
    with pytest.raises(NtlbError, match="not found"):
        read_layout(tmp_path / "none.json")


def test_largest_boxes_under_half_the_image_by_hand():
    # areas 40, 30, 20, 5 of an image of 100: 40 fits, 40+30 = 70 does not -> stop (smaller ones are not skipped to)
    assert largest_boxes_under([20, 40, 5, 30], 100) == [1]
    assert largest_boxes_under([10, 20, 15], 100) == [1, 2, 0]
    assert largest_boxes_under([60], 100) == []


def test_random_world_layouts_are_deterministic_and_disjoint():
    first, again = random_world_layout(3), random_world_layout(3)
    assert first == again
    for index, (a0, b0, a1, b1) in enumerate(first.boxes):
        for c0, d0, c1, d1 in first.boxes[index + 1 :]:
            assert a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0


@pytest.mark.skipif(not COCO.is_file(), reason="../shared/data/coco100 is not on this machine")
def test_coco_filter_on_real_annotations():
    data = json.loads(COCO.read_text())
    image = data["images"][0]
    layout = coco_layout(COCO, image["id"])
    boxes = [a for a in data["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
    areas = sorted((a["bbox"][2] * a["bbox"][3] for a in boxes), reverse=True)
    image_area = image["width"] * image["height"]
    kept = sum(area for area in areas[: len(layout.boxes)])
    assert kept < 0.5 * image_area
    if len(layout.boxes) < len(areas):  # the next largest box would have crossed 50%
        assert kept + areas[len(layout.boxes)] >= 0.5 * image_area
    got = sorted(((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in layout.boxes), reverse=True)
    assert got == pytest.approx(areas[: len(layout.boxes)])
    assert all(text.startswith("a photo of a ") for text in layout.texts)
    assert not math.isnan(sum(layout.area_ratios()))
