"""Building blocks against their formulas: row propagation, batched gradients, normalisations."""

import pytest
import torch

from ntlb import NtlbError
from ntlb.explain.normalize import minmax, normalize_text, upsample, word_relevance
from ntlb.explain.relevance import attention_gradients, one_hot_targets, propagate_row
from ntlb.models.tokenizer import Word


def test_row_propagation_equals_the_full_product():
    generator = torch.Generator().manual_seed(0)
    abars = [torch.rand(2, 5, 5, generator=generator, dtype=torch.float64) for _ in range(4)]
    full = torch.eye(5, dtype=torch.float64).expand(2, 5, 5)
    for abar in abars:
        full = full + abar @ full
    rows = torch.tensor([0, 3])
    fast = propagate_row(abars, rows)
    assert torch.allclose(fast, full[torch.arange(2), rows], rtol=1e-12)


def test_batched_gradients_equal_one_call_per_target():
    generator = torch.Generator().manual_seed(0)
    attention = torch.rand(2, 3, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    scores = (attention.sum(dim=(1, 2)) @ weights).tanh()  # (2 images, 3 texts)
    targets = one_hot_targets(3, (2, 3), 1, "cpu", torch.float64)
    (batched,) = attention_gradients(scores, [attention], targets, False, True)
    for t in range(3):
        (single,) = torch.autograd.grad(scores[:, t].sum(), [attention], retain_graph=True)
        assert torch.allclose(batched[t], single, rtol=1e-12)


def test_text_normalisations_by_hand():
    row = torch.tensor([4.0, 1.0, 3.0, 8.0, 0.0])  # SOT, w1, w2, EOT, pad
    eot = torch.tensor(3)
    assert torch.allclose(normalize_text(row, eot, "visual"), torch.tensor([0, 0.25, 0.75, 0, 0]))
    assert torch.allclose(normalize_text(row, eot, "coop"), torch.tensor([0.5, 0.125, 0.375, 0, 0]))
    assert torch.allclose(normalize_text(row, eot, "max"), torch.tensor([0, 1 / 3, 1, 0, 0]))
    with pytest.raises(NtlbError, match="unknown text normalisation"):
        normalize_text(row, eot, "softmax")


def test_word_relevance_is_the_max_over_its_tokens():
    row = torch.tensor([0.0, 0.1, 0.5, 0.2, 0.0])
    words = [Word("un", 1, 3), Word("blue", 3, 4)]
    assert word_relevance(row, words) == [("un", 0.5), ("blue", pytest.approx(0.2))]


def test_minmax_and_upsample():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 9.0]]])
    assert torch.allclose(minmax(maps), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    big = upsample(maps, (4, 4))
    assert big.shape == (1, 4, 4) and float(big[0, 0, 0]) == 1.0 and float(big[0, -1, -1]) == 9.0
