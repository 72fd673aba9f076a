"""Metrics on hand-computed cases."""

import pytest
import torch

from ntlb.metrics import mask_energy, pointing_game, recall_at_1
from ntlb.tasks import classify


def test_pointing_game_and_energy_by_hand():
    maps = torch.tensor([[[0.0, 1.0], [3.0, 0.0]], [[2.0, 0.0], [0.0, 2.0]]])
    masks = torch.tensor([[[0, 0], [1, 0]], [[0, 1], [1, 0]]], dtype=torch.bool)
    assert pointing_game(maps, masks).tolist() == [True, False]
    assert mask_energy(maps, masks).tolist() == pytest.approx([0.75, 0.0])


def test_maps_are_upsampled_to_the_mask():
    maps = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 4:, 4:] = True
    assert pointing_game(maps, masks).tolist() == [True]
    assert 0.5 < float(mask_energy(maps, masks)[0]) <= 1.0


def test_recall_counts_equal_captions_as_right():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.1, 0.7]])
    assert recall_at_1(scores, ["a", "b", "c"]) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert recall_at_1(scores, ["a", "a", "c"]) == (pytest.approx(1.0), pytest.approx(1.0))


def test_classify_picks_the_nearest_class():
    classifier = torch.eye(3)
    features = torch.tensor([[0.1, 0.9, 0.0], [0.0, 0.2, 0.8]])
    assert classify(features, classifier).tolist() == [1, 2]


def test_empty_class_list(world_model):
    from ntlb import NtlbError
    from ntlb.models import text_features

    with pytest.raises(NtlbError, match="empty class list"):
        text_features(world_model, [])


def test_otsu_splits_a_bimodal_case_where_computed_by_hand():
    # values 1,1,2 | 8,9,9: between-class variance n0*n1*(m0-m1)^2 is largest for this split. By hand:
    # after 2: 3*3*(4/3-26/3)^2 = 484; after 1,1: 2*4*(1-7)^2 = 288; after 8: 4*2*(3-9)^2 = 288
    from ntlb.metrics.localization import otsu_mask, otsu_threshold

    values = torch.tensor([[9.0, 1.0, 8.0], [2.0, 9.0, 1.0]])
    assert otsu_threshold(values) == 8.0
    assert otsu_mask(values).tolist() == [[True, False, True], [False, True, False]]
    assert otsu_threshold(torch.full((3, 3), 0.5)) == 0.5  # a flat map is all foreground, not an error


def test_otsu_iou_by_hand():
    from ntlb.metrics.localization import otsu_iou

    maps = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.9, 1.0], [0.1, 0.0, 0.0]]])
    masks = torch.tensor([[[0, 1, 1], [0, 0, 1], [0, 0, 0]]], dtype=torch.bool)
    # foreground {(0,2), (1,1), (1,2)}; mask {(0,1), (0,2), (1,2)}: intersection 2, union 4
    assert otsu_iou(maps, masks).tolist() == pytest.approx([0.5])


def test_patch_perturbation_blanks_patches_in_relevance_order(world_model):
    from conftest import random_pixels

    from ntlb.metrics.faithfulness import curve_area, patch_perturbation_curve

    pixels = random_pixels(world_model, 1)[0]
    text = torch.randn(world_model.model.text_projection.shape[1], dtype=torch.float64)
    patch_map = torch.arange(64, dtype=torch.float64).reshape(8, 8)  # the last patches are the most relevant
    curve = patch_perturbation_curve(world_model, pixels, text, patch_map, positive=True, fractions=(0.0, 0.1))
    blanked = pixels.clone()
    for index in (63, 62, 61, 60, 59, 58):  # round(0.1 * 64) = 6 most relevant patches
        y, x = divmod(index, 8)
        blanked[:, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8] = 0
    with torch.no_grad():
        features = world_model.encode_image(torch.stack([pixels, blanked])).features
    images = torch.nn.functional.normalize(features, dim=-1)
    expected = world_model.logit_scale * images @ torch.nn.functional.normalize(text, dim=0)
    assert torch.allclose(curve, expected, rtol=1e-9)
    assert curve_area(curve) == pytest.approx(float(expected.mean()))


def test_token_perturbation_deletes_the_least_relevant_tokens_first(world_model):
    from ntlb.metrics.faithfulness import token_perturbation_curve

    tokens = world_model.tokenizer(["a small red circle"])
    eot = int(tokens.eot[0])  # SOT a small red circle EOT -> 4 inner tokens
    relevance = torch.tensor([0.1, 0.4, 0.3, 0.2])
    image = torch.randn(world_model.model.text_projection.shape[1], dtype=torch.float64)
    curve = token_perturbation_curve(world_model, image, tokens.ids[0], eot, relevance, positive=False,
                                     fractions=(0.0, 0.5))
    expected_texts = world_model.tokenizer(["a small red circle", "small red"])  # drops "a" then "circle"
    with torch.no_grad():
        texts = torch.nn.functional.normalize(world_model.encode_text(expected_texts.ids, expected_texts.eot).features,
                                              dim=-1)
    expected = world_model.logit_scale * texts @ torch.nn.functional.normalize(image, dim=0)
    assert torch.allclose(curve, expected, rtol=1e-9)


def test_segmentation_miou_by_hand():
    from ntlb.metrics import segmentation_miou

    maps = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.9, 1.0], [0.1, 0.0, 0.0]],
                         [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]])
    masks = torch.tensor([[[0, 1, 1], [0, 0, 1], [0, 0, 0]]] * 2, dtype=torch.bool)
    # map 1: mean 0.333, foreground {(0,2), (1,1), (1,2)}: object IoU 2/4; background {6 cells} vs 6 cells,
    # 5 shared of 7: 5/7. Map 2: everything but one corner marked: object 3/8, background 1/6.
    expected = [(2 / 4 + 5 / 7) / 2, (3 / 8 + 1 / 6) / 2]
    assert segmentation_miou(maps, masks).tolist() == pytest.approx(expected)


def test_insertion_shows_the_most_relevant_patches_on_a_blank_image(world_model):
    from conftest import random_pixels

    from ntlb.metrics.faithfulness import patch_perturbation_curve

    pixels = random_pixels(world_model, 1)[0]
    text = torch.randn(world_model.model.text_projection.shape[1], dtype=torch.float64)
    patch_map = torch.arange(64, dtype=torch.float64).reshape(8, 8)
    curve = patch_perturbation_curve(world_model, pixels, text, patch_map, fractions=(0.0, 0.1), insertion=True)
    shown = torch.zeros_like(pixels)
    for index in (63, 62, 61, 60, 59, 58):
        y, x = divmod(index, 8)
        shown[:, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8] = pixels[:, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8]
    with torch.no_grad():
        features = world_model.encode_image(torch.stack([torch.zeros_like(pixels), shown])).features
    expected = world_model.logit_scale * torch.nn.functional.normalize(features, dim=-1) @ \
        torch.nn.functional.normalize(text, dim=0)
    assert torch.allclose(curve, expected, rtol=1e-9)
