"""The Explain tab: images x texts under any explainer, its options (empty: the method's own), the score
explained; overlays, highlighted words, probabilities, downloads, and a side-by-side of explainers."""

from __future__ import annotations

from pathlib import Path

from ..config import default_of
from ..config.explainer import ExplainerOptions
from ..config.explaining import ExplainConfig
from ..errors import NtlbError
from ..explain import available, create
from ..explain.spec import ExplainerSpec
from .common import Session
from .widgets import Widgets, field_of, number


def explainer_spec(method: str, start_layer_image, start_layer_text, logit_mode: str | None) -> ExplainerSpec:
    """The spec of the tab's widgets: an empty start layer or score is the method's own."""
    return ExplainerSpec(method, {"start_layer_image": number(start_layer_image),
                                  "start_layer_text": number(start_layer_text), "logit_mode": logit_mode or None})


def explain(session: Session, image, texts: str, method: str, start_layer_image, start_layer_text,
            logit_mode: str | None):
    """Overlays with captions, highlighted words, probabilities over the texts, the JSON and the files."""
    from ..tasks.explaining.files import explain_files

    try:
        path, lines = session.inputs(image, texts)
        spec = explainer_spec(method, start_layer_image, start_layer_text, logit_mode)
        out = Path(path).parent / "explanation"
        data = explain_files(session.adapter, [path], lines, create(spec), out)
    except NtlbError as error:
        raise session.fail(error) from None
    gallery = [(str(out / r["overlay"]), f"{r['text']} (p {r['probability']:.2f})")
               for r in data["pairs"] if r["overlay"]]
    words: list[tuple[str, float | None]] = []
    for record in data["pairs"]:
        words += [(f"{record['text']}:", None)] + [(w, float(v)) for w, v in record["words"] or []]
        words.append(("\n", None))
    probabilities = {r["text"]: r["probability"] for r in data["pairs"]}
    files = [str(out / name) for name in ("explanations.json", "report.html", *data["grids"])]
    return gallery, words, probabilities, data, files


def compare(session: Session, image, texts: str, methods: list[str], logit_mode: str | None):
    """One figure: the pairs under every chosen explainer."""
    from ..tasks.explaining.files import compare_explainers

    try:
        path, lines = session.inputs(image, texts)
        out = Path(path).parent / "compare"
        compare_explainers(session.adapter, [path], lines, methods or None, out, logit_mode or None)
    except NtlbError as error:
        raise session.fail(error) from None
    return str(out / "compare.png")


def build(gradio, session: Session, widgets: Widgets, examples: list[tuple[str, str]], preload: bool) -> None:
    """The tab's widgets and events (api names explain, compare)."""
    default = create(default_of(field_of(ExplainConfig, "explainer")))  # its own options are what the page shows
    shown = [None] * 5  # the explanation the page opens with
    if preload:
        shown = explain(session, examples[0][0], examples[0][1], default.name, None, None, default.logit_mode)
    methods = available()
    with gradio.Tab("Explain"):
        with gradio.Row():
            with gradio.Column(scale=1):
                image = gradio.Image(type="pil", label="image", value=examples[0][0] if preload else None)
                texts = gradio.Textbox(label="texts, one per line", lines=4, value=examples[0][1] if preload else "")
                method = widgets("explain", ExplainConfig, "explainer")
                with gradio.Row():
                    start_image = widgets("explain", ExplainerOptions, "start_layer_image")
                    start_text = widgets("explain", ExplainerOptions, "start_layer_text")
                logit_mode = widgets("explain", ExplainerOptions, "logit_mode", value=default.logit_mode)
                run = gradio.Button("Explain", variant="primary")
                gradio.Examples([[path, text] for path, text in examples], [image, texts])
            with gradio.Column(scale=2):
                gallery = gradio.Gallery(shown[0], label="where the score rests (captioned overlays)", columns=3,
                                         object_fit="contain")
                words = gradio.HighlightedText(shown[1], label="word relevance (tokens sum to 1 per text)")
                probabilities = gradio.Label(shown[2], label="p over the texts")
                files = gradio.File(shown[4], label="downloads: explanations.json, report.html, grid.png",
                                    file_count="multiple")
                record = gradio.JSON(shown[3], label="explanations.json")

        def run_explain(image, texts, method, start_image, start_text, logit_mode):
            return explain(session, image, texts, method, start_image, start_text, logit_mode)

        run.click(run_explain, [image, texts, method, start_image, start_text, logit_mode],
                  [gallery, words, probabilities, record, files], api_name="explain")
        with gradio.Row():
            chosen = gradio.CheckboxGroup(methods, value=methods, label="explainers side by side")
            run_compare = gradio.Button("Compare explainers")
        figure = gradio.Image(label="pairs x explainers", type="filepath")

        def run_comparison(image, texts, methods, logit_mode):
            return compare(session, image, texts, methods, logit_mode)

        run_compare.click(run_comparison, [image, texts, chosen, logit_mode], figure, api_name="compare")
