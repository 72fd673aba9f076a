"""The browser app, called as a browser would through gradio_client on loopback: explanations equal
ntlb.explain's, bad input comes back as its one-line message, and the layout tab runs."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from conftest import EXAMPLE, ROOT

import ntlb

gradio = pytest.importorskip("gradio", reason="the app needs the 'app' extra (gradio)")
from gradio_client import Client, handle_file  # noqa: E402

from ntlb.app import serve  # noqa: E402


@pytest.fixture(scope="module")
def running():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = ntlb.load_model()
    app = serve(model, port=port, block=False)
    yield model, Client(f"http://127.0.0.1:{port}/", verbose=False)
    app.close()


def test_explaining_two_texts_on_a_world_scene_gives_ntlb_explain(running):
    model, client = running
    texts = ["a red circle", "a blue square"]
    gallery, words, probabilities, record, files = client.predict(
        handle_file(str(EXAMPLE)), "\n".join(texts), "chefer2021", 0, 0, "scaled", api_name="/explain")
    with torch.no_grad():
        direct = ntlb.explain(model, EXAMPLE, texts)
    for t, pair in enumerate(record["pairs"]):
        assert pair["text"] == texts[t]
        assert [w for w, _ in pair["words"]] == [w for w, _ in direct.words(0, t)]
        assert [r for _, r in pair["words"]] == pytest.approx([r for _, r in direct.words(0, t)], rel=1e-5)
        assert pair["probability"] == pytest.approx(float(direct.probabilities()[0, t]), rel=1e-5)
    assert len(gallery) == 2 and gallery[1]["caption"].startswith("a blue square")
    highlighted = [item["token"] for item in words]
    assert highlighted[:4] == ["a red circle:", "a", "red", "circle"]
    assert {c["label"] for c in probabilities["confidences"]} == set(texts)
    names = sorted(path.rsplit("/", 1)[-1] for path in files)
    assert names == ["explanations.json", "grid.png", "report.html"]
    assert json.loads(open([f for f in files if f.endswith(".json")][0]).read())["pairs"][0]["text"] == texts[0]


@pytest.mark.parametrize("texts, message", [("  \n ", "no texts: write one text per line"),
                                            (" ".join(["red"] * 40), "context is 32: shorten it")])
def test_bad_input_returns_its_message(running, texts, message):
    _, client = running
    with pytest.raises(Exception, match=message) as error:
        client.predict(handle_file(str(EXAMPLE)), texts, "chefer2021", 0, 0, "scaled", api_name="/explain")
    assert "Traceback" not in str(error.value)


def test_layout_tab_generates_from_a_layout_file(running):
    _, client = running
    image, maps, metrics = client.predict(None, handle_file(str(ROOT / "examples" / "layout.json")), "ntlb",
                                          "chefer2021", 2, 1, 0, api_name="/layout")
    assert metrics["steps"] == 2 and [o["label"] for o in metrics["objects"]] == ["red circle", "blue star"]
    assert image.endswith(".png") and maps.endswith(".png")


def test_edit_and_generate_tabs(running):
    _, client = running
    edited, compared, metrics = client.predict(handle_file(str(EXAMPLE)), "a purple circle", "", "1", 2, 0,
                                               api_name="/edit")
    assert metrics["semantic_words"] == ["purple", "circle"] and metrics["chosen_expl_weight"] == 1.0
    assert edited.endswith("edited.png") and compared.endswith("compare.png")
    with pytest.raises(Exception, match="'star' is not a word of 'a red circle'") as error:
        client.predict(handle_file(str(EXAMPLE)), "a red circle", "star", "auto", 2, 0, api_name="/edit")
    assert "Traceback" not in str(error.value)
    image, data = client.predict("a green circle and a blue square", "clip", 2, 0, api_name="/generate")
    assert data["method"] == "clip" and image.endswith("image.png")


def test_words_tab_shows_each_words_region_and_the_words_of_a_box(running):
    model, client = running
    text = "a red circle and a blue square"
    choices, gallery, region = client.predict(handle_file(str(EXAMPLE)), text, 2, True, api_name="/words")
    assert [g["caption"] for g in gallery] == [f"{text} (the whole text)", "red", "circle", "blue", "square"]
    choices, gallery, region = client.predict(handle_file(str(EXAMPLE)), text, 2, False, api_name="/words")
    with torch.no_grad():
        direct = ntlb.explain(model, EXAMPLE, [text], method="interactions", steps=2)
    assert [g["caption"] for g in gallery] == [f"{text} (the whole text)", *text.split()]
    box = client.predict(0, 0, 32, 32, api_name="/box_words")
    expected = dict(direct.region_words(0, 0, (0, 0, 32, 32)))
    shown = {c["label"]: c["confidence"] for c in box["confidences"]}
    assert shown["red"] == pytest.approx(expected["red"], rel=1e-4, abs=1e-9)
    width, height = direct.originals[0].size
    with pytest.raises(Exception, match=f"outside the {width}x{height} image") as error:
        client.predict(0, 0, width + 10, 32, api_name="/box_words")
    assert "Traceback" not in str(error.value)
