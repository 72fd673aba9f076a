"""The Words and regions tab: token x patch interactions of one image and one text; the region each word
matches, and the words a box matches."""

from __future__ import annotations

from pathlib import Path

from ..config.explainer import ExplainerOptions
from ..config.explaining import ExplainConfig
from ..errors import NtlbError
from ..explain import create
from ..explain.spec import ExplainerSpec
from .common import Session
from .widgets import Widgets, number


def words(session: Session, image, text: str, steps, contributions: bool = False,
          ) -> tuple[dict, list[str], list[tuple[str, str]]]:
    """(state for the other handlers, the text's words, the caption's map and each word's region as captioned
    overlays): from the token x patch interactions, or with `contributions` from what each semantic word adds to
    the score (the default explainer's shift-averaged maps; no words of a box then)."""
    from ..tasks.explaining.files import explain_files

    try:
        path, lines = session.inputs(image, text)
        if len(lines) != 1:
            raise NtlbError(f"{len(lines)} texts: this tab explains one text, write it on one line")
        out = Path(path).parent / "words"
        kept = []
        explainer = create(ExplainerSpec() if contributions else ExplainerSpec("interactions",
                                                                               {"steps": number(steps)}))
        data = explain_files(session.adapter, [path], lines, explainer, out, keep=kept, word_maps=contributions)
    except NtlbError as error:
        raise session.fail(error) from None
    record = data["pairs"][0]
    gallery = [(str(out / record["overlay"]), f"{record['text']} (the whole text)")]
    gallery += [(str(out / entry["overlay"]), entry["word"]) for entry in record.get("word_maps", [])]
    state = {"explanation": kept[0], "folder": str(out), "record": record}
    return state, [entry["word"] for entry in record.get("word_maps", [])], gallery


def word_region(state: dict | None, word: str | None) -> str | None:
    """The overlay of the region the chosen word matches (the first occurrence of a repeated word)."""
    if not state or not word:
        return None
    entry = next(e for e in state["record"]["word_maps"] if e["word"] == word)
    return str(Path(state["folder"]) / entry["overlay"])


def box_words(session: Session, state: dict | None, x0: float, y0: float, x1: float, y1: float) -> dict[str, float]:
    """Each word's interaction with the patches inside the box (pixels of the uploaded picture)."""
    try:
        if not state:
            raise NtlbError("explain an image and a text first (the button above)")
        pairs = state["explanation"].region_words(0, 0, (x0, y0, x1, y1))
    except NtlbError as error:
        raise session.fail(error) from None
    return dict(pairs)


def build(gradio, session: Session, widgets: Widgets, examples: list[tuple[str, str]], preload: bool) -> None:
    """The tab's widgets and events (api names words, box_words)."""
    own = create("interactions")
    with gradio.Tab("Words and regions"):
        gradio.Markdown("Which region does each word match, and which words does a region match? Token x patch "
                        "interactions (second order, exact up to the path integral), or the map of what each word "
                        "adds to the score (points each word into its own object more often on the bundled model). "
                        "Pick a word to see its region; click two corners on the picture (or type them) for the "
                        "words of a box (interactions only).")
        with gradio.Row():
            with gradio.Column(scale=1):
                image = gradio.Image(type="pil", label="image (click two corners for a box)",
                                     value=examples[0][0] if preload else None)
                text = gradio.Textbox(label="one text", value="a red circle and a blue square")
                steps = widgets("words", ExplainerOptions, "steps", value=own.steps)
                contributions = widgets("words", ExplainConfig, "word_maps",
                                        label="regions from what each word adds to the score (the default "
                                              "explainer, shift-averaged) instead of the interactions")
                run_words = gradio.Button("Explain words", variant="primary")
                word = gradio.Radio([], label="word")
                with gradio.Row():
                    corners = [gradio.Number(0, label=name) for name in ("x0", "y0", "x1", "y1")]
                run_box = gradio.Button("Words in this box")
            with gradio.Column(scale=2):
                region = gradio.Image(label="the region of the chosen word", type="filepath")
                box_result = gradio.Label(label="words of the box (interaction with its patches)")
                word_gallery = gradio.Gallery(label="every word's region", columns=4, object_fit="contain")
        state = gradio.State(None)
        clicks = gradio.State([])

        def explain_words(image, text, steps, contributions):
            found, choices, gallery = words(session, image, text, steps, contributions)
            return found, gradio.update(choices=choices, value=None), gallery, gallery[0][0]

        def corner(points, event):
            points = ([*points, event.index] if len(points) < 2 else [event.index])[-2:]
            if len(points) < 2:
                return points, *(gradio.update() for _ in corners)
            (ax, ay), (bx, by) = points
            return points, min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

        corner.__annotations__["event"] = gradio.SelectData  # gradio passes the click by this annotation

        def words_in_box(state, x0, y0, x1, y1):
            return box_words(session, state, x0, y0, x1, y1)

        run_words.click(explain_words, [image, text, steps, contributions], [state, word, word_gallery, region],
                        api_name="words")
        word.change(word_region, [state, word], region)
        image.select(corner, [clicks], [clicks, *corners])
        run_box.click(words_in_box, [state, *corners], box_result, api_name="box_words")
