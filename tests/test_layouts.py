"""Layout pieces of Algorithm 1 on hand-computed cases: Dice (both variants), box weights, Otsu P/R/F1 against
boxes, the JSON format and its errors, and the paper's 50% filter on real COCO annotations."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import SHARED

from ntlb.errors import NtlbError
from ntlb.losses import box_weights, dice, soft_relevance_mask
from ntlb.metrics.boxes import otsu_box_scores, precision_recall_f1
from ntlb.metrics.detection import detection_scores
from ntlb.tasks.layouts.layout import (
    Layout,
    coco_layout,
    largest_boxes_under,
    random_world_layout,
    read_layout,
    write_layout,
)
from ntlb.world.detector import WorldDetector

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


def test_detection_ap_ar_by_hand():
    truth = [[((0, 0, 10, 10), "a"), ((20, 20, 30, 30), "b")]]
    # "a" found exactly; "b" found with IoU 100 / 160 = 0.625: a hit at IoU thresholds 0.50, 0.55, 0.60 only
    found = [[((0, 0, 10, 10), "a", 0.9), ((20, 20, 30, 36), "b", 0.8)]]
    scores = detection_scores(truth, found)
    assert scores["AP50"] == pytest.approx(1.0)
    assert scores["AP"] == pytest.approx((1.0 + 0.3) / 2)
    assert scores["AR"] == pytest.approx((1.0 + 0.3) / 2)
    # a wrong label is a miss and a false positive; a second image with nothing found halves recall
    scores = detection_scores(truth + [[((5, 5, 15, 15), "a")]], [[((0, 0, 10, 10), "b", 0.9)], []])
    assert scores == {"AP": 0.0, "AP50": 0.0, "AR": 0.0}
    scores = detection_scores(truth + [[((5, 5, 15, 15), "a")]], found + [[]])
    assert scores["AR"] == pytest.approx((0.5 + 0.3) / 2)


def test_world_detector_finds_rendered_objects():
    from scipy import ndimage

    from ntlb.world.scene import Style, _background, box_of, object_masks, random_scene, render

    detector = WorldDetector()
    found = total = 0
    for seed in range(80):
        scene = random_scene(seed)
        image, visible = render(scene)
        full, _ = object_masks(scene.objects, 64)
        grown = [ndimage.binary_dilation(f, iterations=2) for f in full]
        detections = detector(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        for i, obj in enumerate(scene.objects):
            if any((grown[i] & full[j]).any() for j in range(len(full)) if j != i):
                continue  # touching objects of one colour merge: the detector sees regions
            total += 1
            box = box_of(visible[i])
            found += any(d.label == f"{obj.colour} {obj.shape}" and max(abs(a - b) for a, b in zip(d.box, box)) <= 1
                         for d in detections)
    assert total > 80 and found / total >= 0.95
    empty = _background(64, np.random.default_rng(0), Style())
    assert detector(np.clip(empty, 0, 255)) == []


def test_layout_labels_drop_the_prompt():
    layout = Layout(64, 64, [(0, 0, 9, 9)] * 3, ["a photo of a red star", "a photo of an apple.", "dog"])
    assert layout.labels() == ["red star", "apple", "dog"]


def test_per_object_counts_by_hand():
    """The benchmark's per-object counts (benchmarks/layout_results.py): a detection counts for a box only at IoU
    >= 0.5, and colour, shape and both separately."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from layout_results import per_object_counts

    run = {"objects": [{"label": "red star", "box": [0, 0, 10, 10]}, {"label": "blue circle", "box": [20, 20, 30, 30]},
                       {"label": "pink cross", "box": [40, 40, 50, 50]}],
           "detections": [{"label": "red circle", "box": [0, 0, 10, 8]},  # IoU 0.8: right colour, wrong shape
                          {"label": "cyan circle", "box": [20, 20, 30, 30]},  # right shape only
                          {"label": "blue circle", "box": [20, 25, 30, 35]},  # IoU 1/3: not in the box
                          {"label": "pink cross", "box": [42, 40, 52, 50]}]}  # IoU 80 / 120: both right
    assert per_object_counts([run, run]) == {"objects": 6, "object": 6, "colour": 4, "shape": 4, "both": 2}


@pytest.mark.parametrize("binding", [False, True])
def test_exchange_diagnosis_replays_the_refinement(binding):
    """benchmarks/layout_exchange_diagnosis.py rebuilds a run's refined scene from its step-100 latent and the
    recorded changes: bit for bit the latent the refinement ended with, after one-colour moves (the first centre
    wanted cyan) or after an exchange (the two colours wanted bound the other way, which no single move reaches)."""
    import sys

    from conftest import ROOT

    from ntlb.generators import create_generator
    from ntlb.world.scene import COLOURS, SceneObject

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from layout_exchange_diagnosis import refined_latent

    side, centres = 32, ((0.3, 0.3), (0.7, 0.7))
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255
    generator = create_generator("world-render", (side, side), slots=3)
    objects = [SceneObject("circle", "red", "large", *centres[0], 0.2, 0.0),
               SceneObject("square", "green", "large", *centres[1], 0.2, 0.0)]
    generator.latent = torch.nn.Parameter(generator.latent_of(objects, np.full((side, side, 3), 128.0)))
    checkpoint = create_generator("world-render", (side, side), slots=3)
    checkpoint.latent = torch.nn.Parameter(generator.latent.detach().clone())

    def drawn(images, centre):  # the palette index nearest each picture's pixel at `centre`
        pixel = images[:, :, int(centre[1] * side), int(centre[0] * side)]
        return (pixel[:, None] - palette).norm(dim=2).argmin(1)

    def loss(images):
        first, second = (drawn(images, c) for c in centres)
        if binding:  # 0: green then red; 1: red then green (the start); 2: anything else
            red, green = list(COLOURS).index("red"), list(COLOURS).index("green")
            return torch.where((first == green) & (second == red), 0.0,
                               torch.where((first == red) & (second == green), 1.0, 2.0))
        return (palette[first] - palette[list(COLOURS).index("cyan")]).norm(dim=1)

    record = generator.refine_discrete(loss, seed=0)
    kinds = [isinstance(c["slot"], list) for c in record["latents"][0]["changes"]]
    assert kinds == ([True] if binding else [False])  # the case exercises the move it names
    assert torch.equal(refined_latent(checkpoint, record), generator.latent.detach())
