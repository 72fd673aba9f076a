"""The contrastive loss against a hand computation, the schedule, and a resumable tiny run."""

import math

import pytest
import torch

from ntlb.world.train import contrastive_loss, learning_rate, train


def test_contrastive_loss_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = contrastive_loss(image, text, torch.tensor(2.0), ["a", "b"])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert float(loss) == pytest.approx(expected)


def test_identical_captions_are_both_positives():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = contrastive_loss(image, text, torch.tensor(10.0), ["a red circle", "a red circle"])
    assert float(loss) == pytest.approx(math.log(2))  # two equal logits, half the target mass on each


def test_schedule_warms_up_then_decays():
    assert learning_rate(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert learning_rate(99, 100, 1.0, 10) < 0.01


def test_tiny_run_stops_and_resumes(tmp_path):
    train(tmp_path, steps=4, batch_size=8, checkpoint_every=2, max_minutes=1e-6)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 1
    train(tmp_path, steps=4, batch_size=8, checkpoint_every=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and len(state["losses"]) == 4 and (tmp_path / "loss.png").is_file()
