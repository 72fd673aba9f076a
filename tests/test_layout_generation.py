"""Layout generation: masks follow the image's augmentation, the Dice loss through the explainer equals the
released algorithm's (values and gradients), the pixel generator is its formula, and a run resumes to the same
image."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import matches_finite_differences, relative_error

import ntlb
from ntlb.explain.reference import _relevance_matrix
from ntlb.explain.relevance import clip_scores
from ntlb.generators import FourierImage, ModuleGenerator, create_generator
from ntlb.generators.pixels import _COLOUR
from ntlb.losses import box_weights, dice, layout_loss, soft_relevance_mask
from ntlb.models import TextFeatures, text_features
from ntlb.tasks.layouts.generation import LayoutConfig, augmenter, generate, layout_explainer
from ntlb.tasks.layouts.layout import Layout
from ntlb.training import TrainingRun


def test_masks_follow_the_same_augmentation_as_the_image():
    torch.manual_seed(0)
    masks = torch.zeros(6, 2, 64, 64)
    masks[:, 0, 8:30, 10:40] = 1
    masks[:, 1, 36:60, 30:56] = 1
    images = torch.cat([masks[:, :1]] * 3, dim=1)  # the first box painted white on black
    views, warped = augmenter((64, 64))(images, masks)
    painted = views.mean(dim=1) > 0.5
    inter = (painted & warped[:, 0].bool()).sum()
    union = (painted | warped[:, 0].bool()).sum()
    assert float(inter / union) > 0.85  # same geometry (edges differ by interpolation only)
    moved = (warped[:, 0] != masks[:, 0]).float().mean()
    assert float(moved) > 0.01  # and the augmentation did move things


def _reference_layout_loss(adapter, views, masks, features, weights, variant):
    """Algorithm 1 as released: every (view, text) pair on its own, one gradient call, full R of the last layer."""
    n, k = views.shape[0], features.shape[0]
    dices = torch.zeros(n, k, dtype=views.dtype)
    scores = torch.zeros(n, k, dtype=views.dtype)
    for v in range(n):
        for j in range(k):
            image = adapter.encode_image(adapter.normalize(views[v : v + 1]), keep_from=5)
            score = clip_scores(image.features, features[j : j + 1], adapter.logit_scale, "cosine")[0, 0]
            row = _relevance_matrix(score, image.attentions, 0, create_graph=True)[0, 1:]
            relevance = F.interpolate(row.reshape(1, 1, 8, 8), size=(64, 64), mode="bilinear", align_corners=False)
            soft = soft_relevance_mask(relevance[0, 0])
            dices = dices.index_put((torch.tensor(v), torch.tensor(j)), dice(soft, masks[v, j], variant))
            scores = scores.index_put((torch.tensor(v), torch.tensor(j)), score)
    return -(weights.to(dices) * dices.mean(dim=0)).sum() - scores.mean(dim=0).sum()


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_layout_loss_through_the_explainer_matches_the_reference(world_model, variant):
    """The Dice loss from the chefer2021 explainer (last layer, cosine, second-order graph) and its gradient to the
    pixels equal the pair-by-pair released algorithm's to 1e-9 in float64."""
    base = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layout = Layout(64, 64, [(4, 4, 30, 30), (34, 30, 60, 58)], ["a photo of a red circle", "a photo of a blue star"])
    masks = layout.masks().double()[None].expand(2, -1, -1, -1)
    features = text_features(world_model, layout.texts)
    weights = box_weights(layout.area_ratios())
    fast_pixels = base.clone().requires_grad_(True)
    explanation = layout_explainer(LayoutConfig())(world_model, world_model.normalize(fast_pixels),
                                                   TextFeatures(features))
    fast, _ = layout_loss(explanation, masks, weights, variant)
    fast.backward()
    slow_pixels = base.clone().requires_grad_(True)
    slow = _reference_layout_loss(world_model, slow_pixels, masks, features, weights, variant)
    slow.backward()
    assert float(fast.detach()) == pytest.approx(float(slow.detach()), rel=1e-9)
    assert relative_error(fast_pixels.grad, slow_pixels.grad) <= 1e-9 and float(slow_pixels.grad.abs().sum()) > 0


@pytest.mark.slow
def test_any_explainer_with_image_maps_drives_the_layout_loss(world_model):
    layout = Layout(64, 64, [(4, 4, 30, 30)], ["a photo of a red circle"])
    features = text_features(world_model, layout.texts)
    gradients = {}
    for name in ("attention", "rollout", "gradcam", "chefer2021", "clip_surgery"):
        explainer = layout_explainer(LayoutConfig(explainer=name))

        def loss_of(pixels, explainer=explainer):
            explanation = explainer(world_model, world_model.normalize(pixels), TextFeatures(features))
            return layout_loss(explanation, layout.masks().double()[None], box_weights(layout.area_ratios()))[0]

        pixels = torch.rand(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        assert matches_finite_differences(loss_of, pixels)  # the loss's gradient is the loss's
        pixels.requires_grad_(True)
        loss_of(pixels).backward()
        gradients[name] = pixels.grad
    assert relative_error(gradients["attention"], gradients["chefer2021"]) > 1e-3


def test_pixel_generator_is_its_formula():
    generator = create_generator("pixels", (32, 48), seed=1)
    image = generator()
    # sigmoid(4 * C @ irfft2(spectrum / frequency)), written out with numpy's inverse FFT
    spectrum = generator.spectrum.detach().double().numpy()
    fy, fx = np.fft.fftfreq(32)[:, None], np.fft.rfftfreq(48)[None, :]
    frequency = np.maximum(np.sqrt(fx**2 + fy**2), 1 / 48)
    coefficients = (spectrum[..., 0] + 1j * spectrum[..., 1]) / frequency / 48
    planes = np.fft.irfft2(coefficients, s=(32, 48), norm="ortho")
    expected = 1 / (1 + np.exp(-4 * np.einsum("ij,jhw->ihw", _COLOUR.double().numpy(), planes)))
    assert np.allclose(image.detach()[0].double().numpy(), expected, atol=1e-6)
    double = FourierImage((32, 48), seed=1).double()
    assert matches_finite_differences(lambda s: torch.func.functional_call(double, {"spectrum": s}, ()).mean(),
                                      double.spectrum)
    assert torch.equal(FourierImage((32, 48), seed=1)(), create_generator("pixels", (32, 48), seed=1)())

    def roughness(image):  # neighbour differences relative to the spread: scale-free
        vertical = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
        return float((vertical + (image[..., 1:] - image[..., :-1]).abs().mean()) / image.std())

    with torch.no_grad():
        rough = [roughness(FourierImage((64, 64), seed=2, decay=d)()) for d in (1.0, 1.5, 2.0)]
    assert rough[0] > 1.5 * rough[1] > 2.25 * rough[2]  # a steeper spectrum decay leaves less fine detail
    wrapped = ModuleGenerator(torch.nn.Tanh(), torch.zeros(1, 3, 4, 4), signed=True)
    assert torch.allclose(wrapped(), torch.full((1, 3, 4, 4), 0.5))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ntlb", "masked+full"])
def test_generation_resumes_to_the_same_image(tmp_path, monkeypatch, method):
    adapter = ntlb.load_model()
    layout = Layout(64, 64, [(4, 4, 30, 30), (34, 30, 60, 58)], ["a photo of a red circle", "a photo of a blue star"])
    config = LayoutConfig(method=method, steps=4, snapshot_every=2, views=2)
    straight = generate(adapter, layout, create_generator("pixels", (64, 64)), tmp_path / "a", config, False)
    save = TrainingRun.save

    def stop_after_first_checkpoint(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainingRun, "save", stop_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted after step 2/4 \(2 steps done\)"):
        generate(adapter, layout, create_generator("pixels", (64, 64)), tmp_path / "b", config, False)
    monkeypatch.setattr(TrainingRun, "save", save)
    resumed = generate(adapter, layout, create_generator("pixels", (64, 64)), tmp_path / "b", config, False)
    assert torch.allclose(straight, resumed, atol=1e-6)
    assert (tmp_path / "b" / "image.png").is_file() and (tmp_path / "b" / "snapshots" / "step_00004.png").is_file()
    assert not torch.allclose(straight, create_generator("pixels", (64, 64))())  # it did optimise


@pytest.mark.slow
def test_layout_cli_generates_and_evaluates(tmp_path, capsys):
    from ntlb.cli import main

    layout = Layout(64, 64, [(2, 2, 30, 30)], ["a photo of a red circle"])
    from ntlb.tasks.layouts.layout import write_layout

    path = write_layout(layout, tmp_path / "layout.json")
    out = tmp_path / "run"
    assert main(["layout", "generate", "--layout", str(path), "--steps", "2", "--views", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    first = metrics["objects"][0]
    assert metrics["method"] == "ntlb" and metrics["explainer"] == "chefer2021"
    both = first["precision"] + first["recall"]
    assert first["f1"] == pytest.approx(2 * first["precision"] * first["recall"] / both if both else 0.0)
    assert metrics["generator"] == "world-render"  # the default for 64-pixel layouts with the bundled model
    assert (out / "maps.png").is_file() and (out / "image.png").is_file()
    assert main(["layout", "evaluate", str(out)]) == 0
    assert "| ntlb | 1 |" in capsys.readouterr().out
    world = tmp_path / "world"  # a world layout: the world's detector runs, and AP / AR come with the table
    assert main(["layout", "generate", "--world-seed", "3", "--loss", "masked", "--steps", "2", "--views", "2",
                 "--generator", "pixels", "--decay", "1.5", "--out", str(world)]) == 0
    data = json.loads((world / "metrics.json").read_text())
    assert data["detector"] == "world" and isinstance(data["detections"], list) and data["decay"] == 1.5
    from ntlb.metrics.detection import detection_scores

    expected = detection_scores([[(o["box"], o["label"]) for o in data["objects"]]],
                                [[(d["box"], d["label"], d["score"]) for d in data["detections"]]])
    capsys.readouterr()
    assert main(["layout", "evaluate", str(out), str(world)]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| masked |")][0].split(" | ")
    assert row[1] == "1" and float(row[5]) == pytest.approx(100 * expected["AP"], abs=0.05)
    assert float(row[4]) == pytest.approx(100 * data["mean"]["f1"], abs=0.05)
    assert main(["layout", "generate", "--steps", "2", "--out", str(out)]) == 2
    assert "exactly one layout" in capsys.readouterr().err


def test_summary_rows_average_runs_and_score_detections():
    from ntlb.tasks.layouts.generation import summarize_runs

    def run(method, f1, detections, dice="paper"):
        objects = [{"box": [0, 0, 20, 20], "label": "red circle"}, {"box": [30, 30, 60, 60], "label": "blue star"}]
        return {"method": method, "dice": dice, "objects": objects, "detections": detections,
                "mean": {"precision": f1, "recall": f1, "f1": f1, "cosine": 0.3}}

    exact = [{"box": [0, 0, 20, 20], "label": "red circle", "score": 0.9}]
    table = summarize_runs([run("ntlb", 0.2, exact), run("ntlb", 0.6, exact), run("masked", 0.1, []),
                            run("ntlb", 0.9, [], dice="released")])
    assert set(table) == {"ntlb", "masked", "ntlb (released Dice)"}
    assert table["ntlb"]["runs"] == 2 and table["ntlb"]["f1"] == pytest.approx(0.4)
    # one of the two classes found exactly in both images: AP and AR are 1 for it and 0 for the other
    assert table["ntlb"]["AP"] == pytest.approx(0.5) and table["ntlb"]["AR"] == pytest.approx(0.5)
    assert table["masked"]["AP"] == pytest.approx(0.0) and table["ntlb (released Dice)"]["f1"] == pytest.approx(0.9)
    undetected = run("ntlb", 0.4, [])
    del undetected["detections"]  # a run without a detector counts in F1, not in AP
    pooled = summarize_runs([run("ntlb", 0.2, exact), undetected])["ntlb"]
    assert pooled["detected_runs"] == 1 and pooled["AP"] == pytest.approx(0.5) and pooled["f1"] == pytest.approx(0.3)
