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
    from ntlb.tasks import text_classifier

    with pytest.raises(NtlbError, match="empty class list"):
        text_classifier(world_model, [])
