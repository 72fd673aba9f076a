"""The contrastive loss against a hand computation, the schedule, and a resumable tiny run."""

import gc
import math
import multiprocessing

import pytest
import torch

from ntlb.training import warmup_cosine
from ntlb_research.world_training import contrastive_loss, train


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
    assert warmup_cosine(0, 100, 1.0, 10) == pytest.approx(0.1)  # linear ramp (CLIP training)
    assert warmup_cosine(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 1.0, 10) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine(99, 100, 1.0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert warmup_cosine(0, 50, 0.002, 1, 1e-5) == 1e-5  # CoOp: a constant warm-up epoch
    assert warmup_cosine(1, 50, 0.002, 1, 1e-5) == pytest.approx(0.002)


@pytest.mark.slow
def test_tiny_run_stops_and_resumes(tmp_path):
    gc.disable()  # what a stopped run leaves running must not wait for a garbage collection to end
    try:
        train(tmp_path, steps=4, batch_size=8, checkpoint_every=2, max_minutes=1e-6, progress=False)
        assert multiprocessing.active_children() == []  # the data worker stopped with the run
    finally:
        gc.enable()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["done"] == 1 and len(state["losses"]) == 1
    train(tmp_path, steps=4, batch_size=8, checkpoint_every=2, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["done"] == 4 and len(state["losses"]) == 4 and (tmp_path / "loss.png").is_file()
    straight = tmp_path / "straight"
    train(straight, steps=4, batch_size=8, checkpoint_every=2, progress=False)
    assert torch.load(straight / "checkpoint.pt", weights_only=False)["losses"] == state["losses"]
