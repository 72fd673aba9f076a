"""Pictures: overlays sit on the part of the original the model saw; words are highlighted by relevance."""

import numpy as np
import pytest
import torch
from PIL import Image

from ntlb.models import PreprocessConfig
from ntlb.viz import explanation_grid, overlay, view_box, words_ansi, words_html

CONFIG = PreprocessConfig(size=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3)


def test_view_box_of_a_centre_crop():
    assert view_box((200, 100), CONFIG) == (50.0, 0.0, 150.0, 100.0)
    squash = PreprocessConfig(size=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="squash")
    assert view_box((200, 100), squash) == (0.0, 0.0, 200.0, 100.0)


def test_overlay_puts_the_hot_patch_where_it_belongs():
    image = Image.new("RGB", (200, 100), (128, 128, 128))
    patch = torch.zeros(2, 2)
    patch[0, 1] = 1.0  # top-right patch of the centre crop
    out = np.asarray(overlay(image, patch, CONFIG, style="jet")).astype(int)
    assert out.shape == (100, 200, 3)
    hot, cold = out[10, 140], out[90, 60]
    assert hot[0] > hot[2] and cold[2] > cold[0]  # jet: red where relevant, blue where not
    assert (out[:, :40] < 60).all()  # outside the model's view: dimmed


def test_the_default_overlay_keeps_the_colours_of_what_is_relevant():
    """A red and a blue object: where the map is hot the red stays exactly red, where it is cold the blue turns grey
    (jet would paint the red object's place red-brown and the blue one's blue either way)."""
    image = np.full((100, 100, 3), 128, dtype=np.uint8)
    image[10:40, 60:90] = (215, 35, 35)
    image[60:90, 10:40] = (40, 70, 220)
    patch = torch.zeros(2, 2)
    patch[0, 1] = 1.0
    out = np.asarray(overlay(Image.fromarray(image), patch, CONFIG)).astype(int)
    assert (out[20:30, 70:80] == (215, 35, 35)).all()  # the relevant object, its own colour
    cold = out[70:80, 20:30]
    assert (cold.max(axis=-1) - cold.min(axis=-1) <= 4).all() and (cold < 100).all()  # the rest: dim grey
    assert {tuple(out[20, x]) for x in range(40, 60)} >= {(0, 0, 0), (255, 255, 255)}  # a contour around it


def test_words_html_and_ansi():
    words = [("a", 0.1), ("<red>", 0.8), ("circle", 0.4)]
    page = words_html(words)
    assert "&lt;red&gt;" in page and "rgba(220, 30, 30, 1.00)" in page and "rgba(220, 30, 30, 0.50)" in page
    ansi = words_ansi(words)
    assert "\x1b[48;2;255;0;0m" in ansi and ansi.count("\x1b[0m") == 3


@pytest.mark.slow
def test_grid_figure(world_model, tmp_path):
    from conftest import EXAMPLE

    import ntlb

    explanation = ntlb.explain(world_model, [EXAMPLE, EXAMPLE], ["a red circle", "a blue square"])
    (path,) = explanation_grid(explanation, tmp_path / "grid.png")
    with Image.open(path) as picture:
        assert picture.size[0] > 400 and picture.size[1] > 400
    texts = [f"a {c} circle" for c in ("red", "blue", "green", "pink", "cyan")]
    explanation = ntlb.explain(world_model, [EXAMPLE, EXAMPLE, EXAMPLE], texts)  # 3 rows of 5 cells
    pages = explanation_grid(explanation, tmp_path / "many.png", texts, per_page=10)  # whole rows, <= 10 cells
    assert [p.name for p in pages] == ["many-1.png", "many-2.png"]
    with Image.open(pages[0]) as first, Image.open(pages[1]) as last:
        assert last.size[1] < first.size[1]  # two rows, then one
