"""The word scores that see a missing word ("softmin", "contrast", "deletion") against hand-computed cases, their
gradients against finite differences on a small random model (float64), and the word-grounding test on a few
pairs: its rows recomputed directly, its pairs false in the way they say."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import matches_finite_differences, random_pixels

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain import create
from ntlb.explain.explanation import Explanation
from ntlb.explain.targets import Columns
from ntlb.losses.semantic_words import (
    DELETION_TEMPERATURE,
    SOFTMIN_TEMPERATURE,
    semantic_word_scores,
    soft_minimum,
    word_token_masks,
)
from ntlb.models.tokenizer import without_words

TEXT = "a red circle and a blue square"
WORDS = ["red", "circle", "blue", "square"]


@pytest.fixture(scope="module")
def world():
    return ntlb.load_model()


def _explanation(world, row: list[float], logits: list[float], texts: list[str]) -> Explanation:
    """One image explained with the first text (slot 0) of `texts`; logits: its score with every text."""
    tokens = world.tokenizer(texts)
    text_rows = torch.zeros(1, 1, tokens.ids.shape[1])
    text_rows[0, 0, : len(row)] = torch.tensor(row)
    columns = torch.zeros(1, 1, dtype=torch.long)
    return Explanation(image=None, text=text_rows, logits=torch.tensor([logits]), tokens=tokens,
                       targets=Columns(columns), columns=columns, method="hand", logit_mode="scaled",
                       logit_scale=100.0, input_size=(64, 64))


def _soft_min(values: list[float], t: float) -> float:
    return -t * math.log(sum(math.exp(-v / t) for v in values) / len(values))


def test_grounded_scores_by_hand(world):
    tokens = world.tokenizer([TEXT])
    eot = int(tokens.eot[0])
    spans = {w.text: w.start for w in tokens.words[0]}
    row = [0.0] * (eot + 1)
    row[0], row[eot] = 9.0, 9.0  # SOT and EOT: outside every share
    for word, value in zip(["a", "red", "circle", "and", "blue", "square"], [1.0, 4.0, 2.0, 1.0, 1.0, 3.0]):
        row[spans[word]] = value  # "a" twice: the second "a" keeps 0
    inside = sum(row[1:eot])
    shares = [row[spans[w]] / inside for w in WORDS]
    masks = word_token_masks(tokens, [WORDS])
    explanation = _explanation(world, row, [0.0], [TEXT])
    mean = sum(shares) / 4
    softmin = float(semantic_word_scores(explanation, masks, "softmin")[0, 0])
    assert softmin == pytest.approx(_soft_min([s / mean for s in shares], SOFTMIN_TEMPERATURE), rel=1e-6)
    reference = torch.tensor([[0.1, 0.3, 0.2, 0.2]])
    contrast = float(semantic_word_scores(explanation, masks, "contrast", reference=reference)[0, 0])
    expected = _soft_min([(s - r) / 0.2 for s, r in zip(shares, reference[0].tolist())], SOFTMIN_TEMPERATURE)
    assert contrast == pytest.approx(expected, rel=1e-6)
    # the same shares with "max": softmin divides by the words' mean, so the normalisation cancels
    maxed = float(semantic_word_scores(explanation, masks, "softmin", normalize="max")[0, 0])
    assert maxed == pytest.approx(softmin, rel=1e-6)
    with pytest.raises(NtlbError, match="needs the words' shares on reference pictures"):
        semantic_word_scores(explanation, masks, "contrast")


def test_deletion_score_by_hand(world):
    texts, index = without_words([TEXT], [WORDS], world.tokenizer)
    assert texts[1:] == ["a circle and a blue square", "a red and a blue square", "a red circle and a square",
                         "a red circle and a blue"]
    assert index.tolist() == [[1, 2, 3, 4]]
    scaled = [30.0, 25.0, 31.0, 20.0, 28.0]  # scaled logits (x 100): the text, then without each word
    explanation = _explanation(world, [0.0], scaled, texts)
    masks = word_token_masks(world.tokenizer([TEXT]), [WORDS])
    value = float(semantic_word_scores(explanation, masks, "deletion", dropped=index)[0, 0])
    drops = [(scaled[0] - s) / 100 for s in scaled[1:]]  # one word adds nothing: 30 - 31 < 0
    assert value == pytest.approx(_soft_min(drops, DELETION_TEMPERATURE), rel=1e-6)
    assert min(drops) < value < sum(drops) / 4
    with pytest.raises(NtlbError, match="needs the texts without each word"):
        semantic_word_scores(explanation, masks, "deletion")


def test_soft_minimum_limits():
    values, chosen = torch.tensor([[0.2, 0.5, 0.9, 7.0]]), torch.tensor([[True, True, True, False]])
    assert float(soft_minimum(values, chosen, 1e-4)[0]) == pytest.approx(0.2, abs=1e-3)  # unused slot ignored
    assert float(soft_minimum(values, chosen, 1e4)[0]) == pytest.approx(1.6 / 3, abs=1e-3)
    with pytest.raises(NtlbError, match="temperature"):
        soft_minimum(values, chosen, 0.0)


def test_grounded_scores_have_the_gradient_finite_differences_give(hf_small):
    """Each new score as a function of the pixels (chefer2021 with create_graph, float64, a random 3-layer CLIP)."""
    texts = ["a red circle and a blue square"]
    words = [["red", "circle", "blue", "square"]]
    explainer = create("chefer2021", create_graph=True)
    tokens = hf_small.tokenizer(texts)
    masks = word_token_masks(tokens, words)
    pixels = random_pixels(hf_small, 1)
    reference = torch.tensor([[0.15, 0.3, 0.2, 0.25]], dtype=torch.float64)
    for variant in ("softmin", "contrast"):
        def score(x, variant=variant):
            explanation = explainer(hf_small, x, texts, pairs="diagonal")
            return semantic_word_scores(explanation, masks, variant, reference=reference)
        assert matches_finite_differences(score, pixels)
        x = pixels.clone().requires_grad_(True)
        assert float(torch.autograd.grad(score(x).sum(), x)[0].abs().sum()) > 0  # the check compared non-zeros
    shortened, index = without_words(texts, words, hf_small.tokenizer)

    def deletion(x):
        explanation = explainer(hf_small, x, shortened, pairs=torch.zeros(1, 1, dtype=torch.long))
        return semantic_word_scores(explanation, masks, "deletion", dropped=index)
    assert matches_finite_differences(deletion, pixels)
    x = pixels.clone().requires_grad_(True)
    assert float(torch.autograd.grad(deletion(x).sum(), x)[0].abs().sum()) > 0


def test_one_word_wrong_pairs_are_false_the_way_they_say():
    import numpy as np

    from ntlb.world import random_scene
    from ntlb_research.explainer_benchmark import _made_false

    scene = next(s for s in (random_scene(seed, 2) for seed in range(50))
                 if s.objects[0].colour != s.objects[1].colour and s.objects[0].shape != s.objects[1].shape)
    for kind in ("colour", "shape", "missing", "swap"):
        wrong, changed = _made_false(scene, kind, np.random.default_rng(0))
        before = [(o.colour, o.shape) for o in scene.objects]
        after = [(o.colour, o.shape) for o in wrong.objects]
        if kind == "missing":
            assert len(after) == 1 and after[0] in before and changed in ((1, 2), (5, 6))
            continue
        differing = [i for i in range(2) if before[i] != after[i]]
        assert len(differing) == (2 if kind == "swap" else 1)
        for i in differing:
            assert (before[i][0] != after[i][0]) == (kind in ("colour", "swap"))
            assert (before[i][1] != after[i][1]) == (kind == "shape")
            if kind == "colour":
                assert after[i][0] not in {c for c, _ in before}  # a colour neither object has
            if kind == "shape":
                assert after[i][1] not in {s for _, s in before}
        if kind == "swap":
            assert [c for c, _ in after] == [c for c, _ in before][::-1]


def test_word_grounding_rows_equal_a_direct_count(world):
    from ntlb_research.explainer_benchmark import one_word_wrong_pairs, word_grounding

    results = word_grounding(world, ["chefer2021", "decomposition"], per_kind=2, logit_modes=("scaled",),
                             normalizations=("visual",), scores=("paper", "deletion"), references=1)
    assert "decomposition" in results["skipped"]
    assert results["clip"]["missing"] == 1.0 and results["clip"]["colour"] == 1.0  # CLIP sees these (40/40)
    pairs = one_word_wrong_pairs(2)
    texts = [p.caption.text for p in pairs]
    explainer = create("chefer2021")
    with torch.no_grad():
        sides = [explainer(world, [getattr(p, s) for p in pairs], texts, pairs="diagonal") for s in ("right", "wrong")]
    masks = word_token_masks(sides[0].tokens, [[w.text for w in p.caption.words if w.role in ("colour", "shape")]
                                               for p in pairs])
    higher = semantic_word_scores(sides[0], masks, "paper") > semantic_word_scores(sides[1], masks, "paper")
    row = next(r for r in results["rows"] if r["explainer"] == "chefer2021" and r["score"] == "paper")
    assert row["all"] == pytest.approx(float(higher.float().mean()))
    for k, kind in enumerate(("colour", "shape", "missing", "swap")):
        assert row[kind] == pytest.approx(float(higher[2 * k : 2 * k + 2].float().mean()))
    assert any(r["score"] == "deletion" and r["explainer"] == "none (scores only)" for r in results["rows"])


def test_reference_shares_are_the_mean_over_the_pictures(world):
    from ntlb.losses.semantic_words import reference_word_shares, word_shares
    from ntlb.world.datasets import reference_pictures

    texts = [TEXT, "a green star and a pink cross"]
    masks = word_token_masks(world.tokenizer(texts), [WORDS, ["green", "star", "pink", "cross"]])
    pictures = reference_pictures(3)
    explainer = create("chefer2021")
    mean = reference_word_shares(explainer, world, pictures, texts, masks)
    with torch.no_grad():
        each = [word_shares(explainer(world, [p, p], texts, pairs="diagonal"), masks)[:, 0] for p in pictures]
    torch.testing.assert_close(mean, torch.stack(each).mean(dim=0), rtol=1e-5, atol=1e-6)
    assert mean.shape == (2, 4) and bool((mean > 0).all())


def test_editing_and_generation_take_every_word_score_and_default_to_deletion():
    from ntlb.config.guidance import EditConfig, GenerateConfig

    assert EditConfig().word_score == GenerateConfig().word_score == "deletion"  # the grounding test's winner
    assert EditConfig(word_score="contrast").word_score == "contrast"
    assert GenerateConfig(word_score="paper").word_score == "paper"
    with pytest.raises(NtlbError, match="unknown word score 'median'"):
        EditConfig(word_score="median")


@pytest.mark.parametrize("logit_mode, normalize", [("scaled", "visual"), ("cosine", "max")])  # edit, generate
def test_guidance_word_term_equals_a_direct_recomputation_and_finite_differences(hf_small, logit_mode, normalize):
    """The word term of the edit and generation loops (`WordTerm`: the shortened texts' features or the reference
    shares computed once) against the score recomputed from its definition, and its gradient to the image features
    against finite differences (float64, a random 3-layer CLIP, chefer2021 with create_graph as the loops run it)."""
    import torch.nn.functional as F

    from ntlb.losses.semantic_words import word_shares
    from ntlb.models.features import text_features
    from ntlb.models.inputs import ImageFeatures
    from ntlb.tasks.guidance.editing import WordTerm, word_explainer
    from ntlb.world.datasets import reference_pictures

    tokens = hf_small.tokenizer([TEXT])
    masks = word_token_masks(tokens, [WORDS])
    features = hf_small.encode_image(random_pixels(hf_small, 2)).features.detach()
    explainer = word_explainer("chefer2021", logit_mode)
    for variant in ("deletion", "contrast", "paper"):
        term = WordTerm(hf_small, TEXT, WORDS, variant, normalize, "chefer2021", logit_mode)

        def loss(f, term=term):
            return term(explainer(hf_small, ImageFeatures(f), tokens), f)

        value = loss(features)
        assert value.shape == (2, 1)
        if variant == "deletion":  # cosine units in either logit mode
            texts = [TEXT] + without_words([TEXT], [WORDS], hf_small.tokenizer)[0][1:]
            cosine = F.normalize(features, dim=-1) @ text_features(hf_small, texts).T  # (2, 5)
            direct = [_soft_min((row[0] - row[1:]).tolist(), DELETION_TEMPERATURE) for row in cosine]
        else:
            with torch.no_grad():
                on_references = create("chefer2021", logit_mode=logit_mode)(hf_small, reference_pictures(), [TEXT])
                explanation = explainer(hf_small, ImageFeatures(features), tokens)
            reference = word_shares(on_references, masks, normalize).mean(dim=0) if variant == "contrast" else None
            direct = semantic_word_scores(explanation, masks, variant, normalize, reference=reference)[:, 0].tolist()
        assert (-value[:, 0]).tolist() == pytest.approx(direct, rel=1e-6, abs=1e-9)
        assert matches_finite_differences(loss, features)
