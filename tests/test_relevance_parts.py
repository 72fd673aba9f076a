"""Building blocks against their formulas: row propagation, batched gradients, normalisations."""

import pytest
import torch

from ntlb import NtlbError
from ntlb.explain.normalize import minmax, normalize_text, upsample, word_relevance
from ntlb.explain.relevance import attention_gradients, propagate_row, select_row
from ntlb.explain.targets import AllPairs, Diagonal, TopK, as_targets, image_targets, text_targets, top_k
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
    columns = AllPairs().columns(scores)
    (batched,) = attention_gradients(scores, [attention], image_targets(columns, scores), False, True)
    for t in range(3):
        (single,) = torch.autograd.grad(scores[:, t].sum(), [attention], retain_graph=True)
        assert torch.allclose(batched[t], single, rtol=1e-12)


def test_pair_selection_and_targets_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    targets = as_targets("all")
    assert targets == AllPairs() and targets.columns(logits).tolist() == [[0, 1, 2], [0, 1, 2]]
    assert top_k(2) == TopK(2) and as_targets("diagonal") == Diagonal()
    assert TopK(2).columns(logits).tolist() == [[1, 2], [0, 2]]
    assert as_targets(lambda scores: scores.topk(2).indices).columns(logits).tolist() == [[1, 2], [0, 2]]
    needed, local = TopK(1).subset(torch.tensor([[0.1, 0.9, 0.5, 0.0], [0.1, 0.2, 0.3, 0.9], [0.0, 0.8, 0.1, 0.0]]))
    assert needed == [1, 3] and local.tolist() == [[0], [1], [0]]  # the texts needed, each image's among them
    chosen = torch.tensor([[1, 2], [0, 2]])
    images = image_targets(chosen, logits)  # slot k of every image at once
    assert images[0].tolist() == [[0, 1, 0], [1, 0, 0]] and images[1].tolist() == [[0, 0, 1], [0, 0, 1]]
    rounds_targets, rounds = text_targets(chosen, logits)  # text 2 is explained twice: its second pair waits
    assert rounds_targets.tolist() == [[[0, 1, 1], [1, 0, 0]], [[0, 0, 0], [0, 0, 1]]]
    assert rounds.tolist() == [[0, 0], [0, 1]]
    every, rounds = text_targets(AllPairs().columns(logits), logits)  # every text with both images: 2 rounds
    assert every.tolist() == [[[1, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 1]]] and rounds.tolist() == [[0] * 3, [1] * 3]
    square = torch.zeros(2, 2)
    single, rounds = text_targets(Diagonal().columns(square), square)  # each text once: one round
    assert single.tolist() == [[[1, 0], [0, 1]]] and rounds.tolist() == [[0], [0]]
    for bad, message in ((torch.tensor([[3]]), "there are 3 texts"), (torch.tensor([[0.5], [1.0]]), "integer"),
                         ("pairs", "unknown pairs")):
        with pytest.raises(NtlbError, match=message):
            as_targets(bad if not isinstance(bad, torch.Tensor) or bad.shape[0] == 2 else bad.expand(2, 1)).columns(
                logits)


def test_select_row_picks_one_row_per_matrix():
    matrices = torch.arange(2 * 3 * 3.0).reshape(2, 3, 3)
    assert select_row(matrices, torch.tensor([2, 0])).tolist() == [[6, 7, 8], [9, 10, 11]]
    assert select_row(matrices, torch.tensor(1)).tolist() == [[3, 4, 5], [12, 13, 14]]


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
