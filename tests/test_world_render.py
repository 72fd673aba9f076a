"""The world-render generator: its pictures are the world renderer's, its encoder inverts the renderer on rendered
scenes, its score-function gradient is the gradient of the expected loss, and an edit through it succeeds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from ntlb.errors import NtlbError
from ntlb.generators import create_generator
from ntlb.generators.world_render import N_COLOURS, PRESENCE, SHAPES, SLOT, shape_level
from ntlb.tasks.guidance.optimisation import surrogate
from ntlb.world.captions import asked_objects, check_world_text
from ntlb.world.detector import found_objects
from ntlb.world.scene import COLOURS, Scene, SceneObject, Style, _background, object_masks, render, shape_mask


def _separate_scene(seed: int) -> Scene:
    """1 to 3 objects of distinct colours that neither touch nor overlap (what the exact detector reads exactly)."""
    rng = np.random.default_rng(seed)
    objects: list[SceneObject] = []
    colours = list(rng.permutation(list(COLOURS)))
    while len(objects) < 1 + seed % 3:
        radius = float(rng.uniform(0.10, 0.25))
        cx, cy = (float(v) for v in rng.uniform(radius, 1 - radius, size=2))
        if all(np.hypot(cx - o.cx, cy - o.cy) > radius + o.radius + 0.05 for o in objects):
            objects.append(SceneObject(SHAPES[rng.integers(6)], colours.pop(), "large" if radius > 0.165 else "small",
                                       cx, cy, radius, float(rng.uniform(-0.3, 0.3))))
    return Scene(objects, seed)


def test_shape_levels_follow_the_renderer_rules():
    axis = torch.linspace(-0.4, 0.4, 81, dtype=torch.float64)
    for shape in SHAPES:
        for angle in (0.0, 0.25):
            level = shape_level(shape, axis[None, :], axis[:, None], torch.tensor(0.3, dtype=torch.float64),
                                torch.tensor(angle, dtype=torch.float64))
            mask = shape_mask(shape, axis.numpy()[None, :], axis.numpy()[:, None], 0.3, angle)
            assert ((level <= 0).numpy() == mask).mean() > 0.998, shape  # ties on the boundary only


def test_pictures_are_the_world_renderers():
    """The most likely picture of a latent equals world/scene.py's render of its objects (no pixel noise) up to
    the renderer's per-object colour jitter, which is added back here, and uint8 truncation."""
    generator = create_generator("world-render", (64, 64))
    for seed in range(4):
        scene = _separate_scene(seed)
        scene.style = Style(noise=0.0)
        rng = np.random.default_rng(scene.seed)
        base = np.clip(_background(64, rng, scene.style), 0, 255)
        jitter = [rng.normal(0, 10, size=3) for _ in scene.objects]  # the draws render makes after the background
        expected, _ = render(scene, 64)
        with torch.no_grad():
            picture = generator.image_of(generator.latent_of(scene.objects, base))[0].permute(1, 2, 0).numpy() * 255
        full, _ = object_masks(scene.objects, 64)
        for mask, shift in zip(full, jitter):
            picture[mask] += shift
        assert np.abs(np.clip(picture, 0, 255) - expected).max() <= 1.0 + 1e-3


def test_encode_inverts_the_renderer_on_rendered_scenes():
    generator = create_generator("world-render", (64, 64))
    for seed in range(12):
        scene = _separate_scene(100 + seed)
        picture = torch.from_numpy(render(scene, 64)[0]).permute(2, 0, 1)[None].float() / 255  # with pixel noise
        found = generator.scenes(generator.encode(picture))[0]
        assert sorted((o.colour, o.shape, o.size) for o in found) == \
            sorted((o.colour, o.shape, o.size) for o in scene.objects)
        for obj in scene.objects:
            twin = next(o for o in found if (o.colour, o.shape) == (obj.colour, obj.shape))
            a, b = object_masks([obj], 64)[0][0], object_masks([twin], 64)[0][0]
            assert (a & b).sum() / (a | b).sum() >= 0.85, (seed, obj)


def test_score_function_gradient_is_the_gradient_of_the_expected_loss():
    """One slot, geometry and presence pinned: the loss of a picture depends on its colour and shape only, so the
    exact gradient of the expected loss enumerates the 8 x 6 choices; the estimator (leave-one-out baseline) agrees
    within 4 standard errors of its own samples."""
    torch.manual_seed(0)
    generator = create_generator("world-render", (24, 24), slots=1, samples=3000)
    generator.latent.data = generator.latent_of([SceneObject("star", "red", "large", 0.5, 0.5, 0.22)],
                                                np.full((24, 24, 3), 128.0))
    generator.latent.data[0, :N_COLOURS + len(SHAPES)] = torch.randn(N_COLOURS + len(SHAPES))
    pinned = torch.ones(1, SLOT, dtype=torch.bool)
    pinned[0, :N_COLOURS + len(SHAPES)] = False
    generator.pinned.copy_(pinned)
    target = torch.tensor([0.9, 0.2, 0.6])[:, None, None]

    def loss(images):
        return (images - target).pow(2).mean(dim=(1, 2, 3))

    generator.latent.data[0, PRESENCE] = 20.0  # always drawn
    images = generator()
    objective, _ = surrogate(generator, loss(images))
    objective.backward()
    estimate = generator.latent.grad[0, : N_COLOURS + len(SHAPES)].clone()
    with torch.no_grad():  # the loss of every (colour, shape)
        values = torch.zeros(N_COLOURS, len(SHAPES))
        for c in range(N_COLOURS):
            for s in range(len(SHAPES)):
                latent = generator.latent.detach().clone()
                latent[0, :N_COLOURS] = -50.0
                latent[0, c] = 50.0
                latent[0, N_COLOURS: N_COLOURS + len(SHAPES)] = -50.0
                latent[0, N_COLOURS + s] = 50.0
                values[c, s] = loss(generator.image_of(latent))[0]
    logits = generator.latent.detach()[0, : N_COLOURS + len(SHAPES)].clone().requires_grad_(True)
    expected = (torch.softmax(logits[:N_COLOURS], 0)[:, None] * torch.softmax(logits[N_COLOURS:], 0)[None]
                * values).sum()
    exact = torch.autograd.grad(expected, logits)[0]
    # the estimator's standard error: its per-sample terms (v - baseline)(onehot - p) have a standard deviation of
    # at most sd(v) x max sqrt(p (1 - p)) <= sd(v) / 2, sd(v) exact over the enumerated choices
    weights = (torch.softmax(logits[:N_COLOURS], 0)[:, None] * torch.softmax(logits[N_COLOURS:], 0)[None]).detach()
    spread = float(((values - (weights * values).sum()) ** 2 * weights).sum().sqrt())
    error = (estimate - exact).abs()
    assert error.max() <= 4 * spread / 2 / np.sqrt(generator.samples) < 0.5 * exact.abs().max()
    assert torch.corrcoef(torch.stack([estimate, exact]))[0, 1] > 0.95


def test_asked_objects_and_world_words():
    assert [(a.size, a.colour, a.shape) for a in asked_objects("a large red circle and two blue stars")] == \
        [("large", "red", "circle"), (None, "blue", "star")]
    with pytest.raises(NtlbError, match="no colour 'brown'"):
        check_world_text("a brown circle")
    with pytest.raises(NtlbError, match="no shape 'hexagon'"):
        check_world_text("a red hexagon")


def test_found_objects_against_the_text():
    scene = Scene([SceneObject("circle", "red", "large", 0.3, 0.5, 0.2), SceneObject("square", "blue", "small",
                                                                                     0.75, 0.5, 0.12)], 5)
    image = torch.from_numpy(render(scene, 64)[0]).permute(2, 0, 1).float() / 255
    report = found_objects(image, "a large red circle and a green square and a small blue square")
    assert [r["found"] for r in report["objects"]] == [True, False, True]
    assert not found_objects(image, "a small red circle")["objects"][0]["found"]  # the red circle is large


def test_non_world_picture_is_refused_by_the_encoder():
    generator = create_generator("world-render", (64, 64))
    smooth = torch.linspace(0, 1, 64)[None, None, :, None].expand(1, 3, 64, 64).clone()
    with pytest.raises(NtlbError, match="not a scene of ntlb's world"):
        generator.encode(smooth)


def test_edit_pins_what_the_text_does_not_ask_to_change():
    generator = create_generator("world-render", (64, 64))
    scene = Scene([SceneObject("circle", "red", "large", 0.3, 0.5, 0.2), SceneObject("square", "blue", "large",
                                                                                     0.72, 0.5, 0.19)], 5)
    z0 = generator.encode(torch.from_numpy(render(scene, 64)[0]).permute(2, 0, 1)[None].float() / 255)
    roles = generator.pin_for_edit(z0, "a red circle and a green square")
    assert [r["role"] for r in roles] == ["kept (named as it is)", "edited to green square"]
    assert generator.pinned[0].all() and generator.pinned[2:].all()  # the red circle and the empty slots stay
    free = ~generator.pinned[1]  # the blue square: its colour changes, its shape and size stay, its centre may move
    assert free[:N_COLOURS].all() and not free[N_COLOURS:N_COLOURS + len(SHAPES)].any()
    assert free.nonzero()[:, 0].tolist() == [*range(N_COLOURS), N_COLOURS + len(SHAPES), N_COLOURS + len(SHAPES) + 1]
    latent = z0.clone()
    latent[0, SLOT + N_COLOURS + len(SHAPES)] += 1.0  # the edited object moves: it costs
    assert float(generator.keep_cost(latent, z0)) > 0 and float(generator.keep_cost(z0, z0)) == 0


def test_an_edit_that_swaps_two_objects_colours_frees_their_colours_not_their_shapes():
    generator = create_generator("world-render", (64, 64))
    orders = ((("circle", "red"), ("square", "blue")), (("square", "blue"), ("circle", "red")))  # left to right
    texts = ("a blue circle and a red square", "a red square and a blue circle")
    for objects, text in itertools.product(orders, texts):
        scene = Scene([SceneObject(shape, colour, "large", x, 0.5, 0.2, 0.0)
                       for (shape, colour), x in zip(objects, (0.3, 0.72))], 5)
        z0 = generator.encode(torch.from_numpy(render(scene, 64)[0]).permute(2, 0, 1)[None].float() / 255)
        roles = generator.pin_for_edit(z0, text)
        free = ~generator.pinned[:2]
        assert free[:, :N_COLOURS].all() and not free[:, N_COLOURS:N_COLOURS + len(SHAPES)].any(), roles
        wanted = {"circle": "edited to blue circle", "square": "edited to red square"}
        encoded = generator.scenes(z0)[0]  # the slots in the encoder's order
        assert [r["role"] for r in roles] == [wanted[o.shape] for o in encoded]


def test_layout_with_more_boxes_than_slots_is_refused(tmp_path, world_model):
    from ntlb.tasks.layouts.generation import LayoutConfig, run_layout
    from ntlb.tasks.layouts.layout import Layout

    layout = Layout(64, 64, [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)],
                    ["a red circle", "a blue star", "a green square"])
    with pytest.raises(NtlbError, match="3 boxes but world-render draws at most 2"):
        run_layout(world_model, layout, tmp_path / "out", LayoutConfig(steps=1), "world-render", {"slots": 2})
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_seeded_edit_succeeds(tmp_path):
    """A red circle edited to 'a purple circle' at lambda = 0: the detector finds a purple circle where the red
    one was (box IoU >= 0.5), and the metrics say so."""
    import ntlb
    from ntlb.metrics.boxes import box_iou
    from ntlb.tasks.guidance.editing import EditConfig, edit
    from ntlb.world.detector import WorldDetector
    from ntlb.world.scene import box_of

    torch.set_num_threads(1)
    scene = Scene([SceneObject("circle", "red", "large", 0.5, 0.5, 0.21, 0.1)], 2 * 10**8 + 3)  # a blue-grey ground
    picture, masks = render(scene, 64)
    result = edit(ntlb.load_model(), create_generator("world-render", (64, 64)), Image.fromarray(picture),
                  "a purple circle", tmp_path, EditConfig(steps=40, expl_weight=0.0, snapshot_every=40),
                  progress=False)
    found = [d for d in WorldDetector()(result["images"][0]) if d.label == "purple circle"]
    assert found and box_iou(found[0].box, box_of(masks[0])) >= 0.5
    assert result["world_detector"]["objects"] == [{"object": "purple circle", "found": True}]


@pytest.mark.parametrize("command, pattern", [
    (["edit", "{scene}", "--text", "a brown circle"], "the world has no colour 'brown'"),
    (["generate", "--text", "a red hexagon and a blue star"], "the world has no shape 'hexagon'"),
    (["edit", "{photo}", "--text", "a red circle"], "not a scene of ntlb's world"),
    (["layout", "generate", "--layout", "{layout}"], "5 boxes but world-render draws at most 4"),
])
def test_world_render_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, command, pattern):
    from conftest import one_line_error

    from ntlb.tasks.layouts.layout import Layout, write_layout

    scene, photo = tmp_path / "scene.png", tmp_path / "photo.png"
    Image.fromarray(render(_separate_scene(3), 64)[0]).save(scene)
    ramp = np.linspace(0, 255, 300, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (200, 1))] * 3, axis=-1)).save(photo)  # a smooth 300 x 200 picture
    layout = write_layout(Layout(64, 64, [(12 * i, 0, 12 * i + 10, 10) for i in range(5)],
                                 ["a photo of a red circle"] * 5), tmp_path / "layout.json")
    out = tmp_path / "out"
    arguments = [part.format(scene=scene, photo=photo, layout=layout) for part in command]
    one_line_error(capsys, [*arguments, "--steps", "2", "--out", str(out)], pattern)
    assert not out.exists()


@pytest.mark.slow
def test_generate_blend_and_layout_say_what_the_detector_finds(tmp_path, capsys, monkeypatch):
    """The default generator with the bundled model is world-render; each command prints and records, per asked
    object, whether the world detector finds it; blend.png keeps a non-square source's aspect (its cells: the
    source and its result at 96 x 64, the target at 64 x 64, each labelled with what the detector finds)."""
    import json

    import ntlb.viz.grid as grid
    from ntlb.cli import main

    cells, draw = [], grid.picture_grid
    monkeypatch.setattr(grid, "picture_grid", lambda shown, *a, **k: cells.extend(shown) or draw(shown, *a, **k))

    assert main(["generate", "--text", "a red star and a blue circle", "--steps", "2", "--candidates", "2",
                 "--out", str(tmp_path / "g")]) == 0
    record = json.loads((tmp_path / "g" / "metrics.json").read_text())["world_detector"]
    assert [r["object"] for r in record["objects"]] == ["red star", "blue circle"]
    assert "world detector: red star" in capsys.readouterr().out
    source, target = tmp_path / "s.png", tmp_path / "t.png"
    Image.fromarray(render(_separate_scene(1), 64)[0]).resize((96, 64), Image.NEAREST).save(source)
    Image.fromarray(render(_separate_scene(4), 64)[0]).save(target)
    assert main(["blend", str(source), "--target", str(target), "--steps", "2", "--out", str(tmp_path / "b")]) == 0
    found = json.loads((tmp_path / "b" / "metrics.json").read_text())["world_detector"]
    assert sorted(found["target"]) == sorted(f"{o.colour} {o.shape}" for o in _separate_scene(4).objects)
    assert (tmp_path / "b" / "blend.png").is_file()
    (source_cell, source_label), (result_cell, result_label), (target_cell, target_label) = cells
    assert source_cell.size == result_cell.size == (96, 64) and target_cell.size == (64, 64)
    assert np.array_equal(np.asarray(source_cell), np.asarray(Image.open(source).convert("RGB")))
    assert np.array_equal(np.asarray(target_cell), np.asarray(Image.open(target).convert("RGB")))
    assert not np.array_equal(np.asarray(result_cell), np.asarray(source_cell))  # the result row shows the result
    from ntlb.generators import picture_tensor
    from ntlb.world.detector import WorldDetector

    seen = [d.label for d in WorldDetector()(picture_tensor(Image.open(source).convert("RGB"), (64, 64))[0])]
    assert found["sources"] == [seen] and seen  # what the source row's label says, recomputed
    for label, title, labels in ((source_label, "source 1", found["sources"][0]),
                                 (result_label, "result 1", found["results"][0]), (target_label, "target",
                                                                                   found["target"])):
        assert label == f"{title}\nfinds: {', '.join(labels) or '-'}"
    assert main(["layout", "generate", "--world-seed", "3", "--steps", "2", "--views", "1",
                 "--out", str(tmp_path / "l")]) == 0
    layout = json.loads((tmp_path / "l" / "metrics.json").read_text())
    assert "detector: " in capsys.readouterr().out

    def iou(a, b) -> float:
        inner = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        return inner / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inner)

    for row in layout["objects"]:  # found: a detection of its label in its box (IoU >= 0.5), recomputed
        assert row["found"] is any(d["label"] == row["label"] and iou(d["box"], row["box"]) >= 0.5
                                   for d in layout["detections"])
