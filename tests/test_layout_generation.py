"""Layout generation: masks follow the image's augmentation, relevance maps equal chefer2021's, the pixel
generator is a differentiable image, and a run resumes to the same image."""

import json

import pytest
import torch
import torch.nn.functional as F

import ntlb
from ntlb.tasks.generators import FourierImage, ModuleGenerator, create_generator
from ntlb.tasks.layout_generation import LayoutConfig, _normalise, augmenter, generate, relevance_maps
from ntlb.tasks.layouts import Layout


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


def test_relevance_maps_are_chefer_last_layer_cosine(world_model):
    images = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    texts = ["a photo of a red circle", "a photo of a blue star"]
    tokens = world_model.tokenizer(texts).truncated()
    features = world_model.encode_text(tokens.ids, tokens.eot).features
    scores, maps = relevance_maps(world_model, images, features, create_graph=False)
    expected = ntlb.explain(world_model, _normalise(world_model, images), texts, start_layer_image=-1,
                            logit_mode="cosine")
    assert torch.allclose(scores, expected.logits, rtol=1e-10)
    upsampled = F.interpolate(expected.image, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(maps, upsampled, rtol=1e-8, atol=1e-12)


def test_pixel_generator_is_a_differentiable_image():
    generator = create_generator("pixels", (32, 48), seed=1)
    image = generator()
    assert image.shape == (1, 3, 32, 48) and float(image.detach().min()) >= 0 and float(image.detach().max()) <= 1
    image.mean().backward()
    assert float(generator.spectrum.grad.abs().sum()) > 0
    assert torch.equal(FourierImage((32, 48), seed=1)(), create_generator("pixels", (32, 48), seed=1)())

    def roughness(image):  # neighbour differences relative to the spread: scale-free
        vertical = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
        return float((vertical + (image[..., 1:] - image[..., :-1]).abs().mean()) / image.std())

    with torch.no_grad():
        rough = [roughness(FourierImage((64, 64), seed=2, decay=d)()) for d in (1.0, 1.5, 2.0)]
    assert rough[0] > 1.5 * rough[1] > 2.25 * rough[2]  # a steeper spectrum decay leaves less fine detail
    wrapped = ModuleGenerator(torch.nn.Tanh(), torch.zeros(1, 3, 4, 4), signed=True)
    assert torch.allclose(wrapped(), torch.full((1, 3, 4, 4), 0.5))


@pytest.mark.parametrize("method", ["ntlb", "masked+full"])
def test_generation_resumes_to_the_same_image(tmp_path, monkeypatch, method):
    import ntlb.tasks.layout_generation as module

    adapter = ntlb.load_model()
    layout = Layout(64, 64, [(4, 4, 30, 30), (34, 30, 60, 58)], ["a photo of a red circle", "a photo of a blue star"])
    config = LayoutConfig(method=method, steps=4, snapshot_every=2, views=2)
    straight = generate(adapter, layout, create_generator("pixels", (64, 64)), tmp_path / "a", config, False)
    save = module.write_bytes_atomic

    def stop_after_first_checkpoint(*args):
        save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "write_bytes_atomic", stop_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        generate(adapter, layout, create_generator("pixels", (64, 64)), tmp_path / "b", config, False)
    monkeypatch.setattr(module, "write_bytes_atomic", save)
    resumed = generate(adapter, layout, create_generator("pixels", (64, 64)), tmp_path / "b", config, False)
    assert torch.allclose(straight, resumed, atol=1e-6)
    assert (tmp_path / "b" / "image.png").is_file() and (tmp_path / "b" / "snapshots" / "step_00004.png").is_file()
    assert not torch.allclose(straight, create_generator("pixels", (64, 64))())  # it did optimise


def test_layout_cli_generates_and_evaluates(tmp_path, capsys):
    from ntlb.cli import main

    layout = Layout(64, 64, [(2, 2, 30, 30)], ["a photo of a red circle"])
    from ntlb.tasks.layouts import write_layout

    path = write_layout(layout, tmp_path / "layout.json")
    out = tmp_path / "run"
    assert main(["layout", "generate", "--layout", str(path), "--steps", "2", "--views", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ntlb" and 0.0 <= metrics["objects"][0]["f1"] <= 1.0
    assert (out / "maps.png").is_file() and (out / "image.png").is_file()
    assert main(["layout", "evaluate", str(out)]) == 0
    assert "| ntlb | 1 |" in capsys.readouterr().out
    world = tmp_path / "world"  # a world layout: the world's detector runs, and AP / AR come with the table
    assert main(["layout", "generate", "--world-seed", "3", "--method", "masked", "--steps", "2", "--views", "2",
                 "--decay", "1.5", "--out", str(world)]) == 0
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
    from ntlb.tasks.layout_generation import summarize_runs

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
