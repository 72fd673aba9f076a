"""Occlusion and image-image explanations against slow versions written from their definitions."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import random_pixels, relative_error

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain.pairs import explain_pair
from ntlb.models.inputs import TextFeatures

TEXTS = ["a photo of a cat", "a small red star.", "dog"]
TOL = 1e-6


def _slow_occlusion(adapter, pixels, texts, window):
    """One occluded copy at a time: cover cells [i, i+window) x [j, j+window) with 0, re-encode, score drop; each
    cell the mean drop of the windows covering it."""
    h, w = adapter.grid_size
    height, width = pixels.shape[-2:]
    features = F.normalize(ntlb.models.features.text_features(adapter, texts), dim=-1)
    whole = F.normalize(adapter.encode_image(pixels).features, dim=-1) @ features.T
    total = torch.zeros(len(pixels), len(texts), h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            copy = pixels.clone()
            copy[..., i * height // h : min(i + window, h) * height // h,
                 j * width // w : min(j + window, w) * width // w] = 0
            scores = F.normalize(adapter.encode_image(copy).features, dim=-1) @ features.T
            total[:, :, i : i + window, j : j + window] += (whole - scores)[:, :, None, None]
            count[i : i + window, j : j + window] += 1
    return adapter.logit_scale * total / count


@pytest.mark.slow
@pytest.mark.parametrize("window", [1, 2])
def test_occlusion_is_the_mean_score_drop_of_the_covering_windows(world_model, window):
    pixels = random_pixels(world_model, 1)
    fast = ntlb.explain(world_model, pixels, TEXTS, method="occlusion", window=window)
    with torch.no_grad():
        slow = _slow_occlusion(world_model, pixels, TEXTS, window)
    assert fast.text is None and fast.image.shape == (1, 3, 8, 8)
    assert relative_error(fast.image, slow) <= TOL


def test_occlusion_runs_on_hugging_face_towers(hf_small):
    pixels = random_pixels(hf_small, 1)
    maps = ntlb.explain(hf_small, pixels, TEXTS[:2], method="occlusion")
    with torch.no_grad():
        slow = _slow_occlusion(hf_small, pixels, TEXTS[:2], 1)
    assert maps.image.shape == (1, 2, 4, 4) and relative_error(maps.image, slow) <= TOL


def test_pair_maps_are_each_side_explained_against_the_other(world_model):
    """Map on a for sim(a, b) = chefer2021 of a against b's features as the target; b's likewise; all pairs and
    diagonal pairs agree; the similarity is the cosine of the two image features."""
    first, second = random_pixels(world_model, 2, seed=3), random_pixels(world_model, 2, seed=4)
    both = explain_pair(world_model, first, second)
    with torch.no_grad():
        a = world_model.encode_image(first).features
        b = world_model.encode_image(second).features
    on_first = ntlb.explain(world_model, first, TextFeatures(b), logit_mode="cosine")
    on_second = ntlb.explain(world_model, second, TextFeatures(a), logit_mode="cosine")
    cosine = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    assert relative_error(both.similarity, cosine) <= TOL
    for i in range(2):
        for j in range(2):
            map_a, map_b = both.maps(i, j)
            assert relative_error(map_a, on_first.image[i, j]) <= TOL
            assert relative_error(map_b, on_second.image[j, i]) <= TOL
    diagonal = explain_pair(world_model, first, second[:2], pairs="diagonal")
    for i in range(2):
        assert relative_error(diagonal.maps(i)[0], both.maps(i, i)[0]) <= TOL
        assert relative_error(diagonal.maps(i)[1], both.maps(i, i)[1]) <= TOL
    assert diagonal.first.image.shape[:2] == (2, 1) and diagonal.similarity.shape == (2, 1)
    assert relative_error(diagonal.similarity[:, 0], cosine.diagonal()) <= TOL


def test_pair_map_is_the_gradient_of_the_similarity_itself(world_model):
    """Slow path from the formula: sim = cos(f(a), f(b)) with both images' graphs live; chefer2021 on a's attention
    from d sim / dA_a, so b's features being a constant target changes nothing."""
    first, second = random_pixels(world_model, 1, seed=5), random_pixels(world_model, 1, seed=6)
    fast = explain_pair(world_model, first, second).maps(0, 0)[0]
    image_a = world_model.encode_image(first, keep_from=0)
    image_b = world_model.encode_image(second)
    similarity = F.cosine_similarity(image_a.features, image_b.features)[0]
    gradients = torch.autograd.grad(similarity, image_a.attentions)
    relevance = torch.eye(image_a.attentions[0].shape[-1], dtype=torch.float64)
    for attention, gradient in zip(image_a.attentions, gradients):
        weighted = (gradient[0] * attention[0]).clamp(min=0).mean(dim=0)
        relevance = relevance + weighted @ relevance
    assert relative_error(fast.flatten(), relevance[0, 1:]) <= TOL


def test_pairs_refuse_bad_requests(world_model):
    pixels = random_pixels(world_model, 2)
    with pytest.raises(NtlbError, match="as many"):
        explain_pair(world_model, pixels, pixels[:1], pairs="diagonal")
    with pytest.raises(NtlbError, match="'all' or 'diagonal'"):
        explain_pair(world_model, pixels, pixels, pairs="top")


@pytest.mark.slow
def test_trained_pair_maps_find_the_shared_object():
    """On the bundled world model, scenes that share one object (placed elsewhere): chefer2021's maps point at the
    shared object on both sides in 62% of 24 held-out pairs (the object covers 6% of the image)."""
    from ntlb.metrics import pointing_game
    from ntlb_research.explainer_benchmark import shared_object_pairs

    pairs = shared_object_pairs(24)
    with torch.no_grad():
        both = explain_pair(ntlb.load_model(), [p.first for p in pairs], [p.second for p in pairs], pairs="diagonal")
    hits = torch.cat([pointing_game(both.first.image[:, 0], torch.stack([p.first_mask for p in pairs])),
                      pointing_game(both.second.image[:, 0], torch.stack([p.second_mask for p in pairs]))])
    assert float(hits.float().mean()) >= 0.5


@pytest.mark.slow
def test_explain_pair_command_writes_both_maps(tmp_path, capsys):
    from PIL import Image

    from ntlb.cli import main
    from ntlb_research.explainer_benchmark import shared_object_pairs

    pair = shared_object_pairs(1)[0]
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    pair.first.save(first)
    pair.second.save(second)
    assert main(["explain-pair", str(first), str(second), str(first), "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "pairs.json").read_text())
    with torch.no_grad():
        expected = explain_pair(ntlb.load_model(), [Image.open(first)], [Image.open(second)])
    assert [r["image"] for r in data["pairs"]] == [str(second), str(first)]
    assert data["pairs"][0]["similarity"] == pytest.approx(float(expected.similarity[0, 0]), rel=1e-5)
    assert data["pairs"][1]["similarity"] == pytest.approx(1.0, abs=1e-5)  # an image with itself
    assert torch.allclose(torch.tensor(data["pairs"][0]["query_map"]), expected.maps(0, 0)[0].float(), atol=1e-5)
    assert (tmp_path / "out" / "pairs.png").is_file() and "similarity" in capsys.readouterr().out
    assert main(["explain-pair", str(first), "--out", str(tmp_path / "none")]) == 2
    assert "at least one image" in capsys.readouterr().err
