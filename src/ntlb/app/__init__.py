"""`ntlb app`: explore explanations in the browser (gradio). The model is loaded once; each request runs the same
library runners as the command line (one batched explainer call per request) and offers the same PNG / JSON /
HTML for download. Bad input shows its one-line message in the page, never a stack trace.

Tabs: Explain (images x texts, any explainer, start layers, score; overlays, highlighted words, probabilities, a
side-by-side of explainers), Prompts (a prompts file from `ntlb prompt train`), Layout (generation from a world
seed or a layout JSON), Edit (text-guided editing with the semantic-word loss and the automatic lambda) and
Generate (multi-word text-to-image guidance), each showing its progress while it runs; Words and regions (token x
patch interactions: pick a word to see the region it matches, click two corners of a box to see its words).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from ..errors import NtlbError
from ..explain import available, create
from ..models.adapter import ClipAdapter
from ..tasks.latent_optimisation import default_generator, generator_for
from ..world import describe, random_scene, render

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app runs offline

EXAMPLE_SEEDS = (7, 11, 23)


def _gradio():
    try:
        import gradio
    except ImportError:
        raise NtlbError("the app needs gradio: pip install 'ntlb[app]'") from None
    return gradio


def _number(value, what: str) -> float:
    """A typed number, or a one-line error in the page's words (not Python's)."""
    try:
        return float(value)
    except ValueError:
        raise NtlbError(f"{what} '{value}': write 'auto' or a number such as 1.5") from None


def example_scenes(folder: Path) -> list[tuple[str, str]]:
    """World scenes to start from: (picture path, its captions one per line)."""
    examples = []
    for seed in EXAMPLE_SEEDS:
        scene = random_scene(seed, 2)
        path = folder / f"world-scene-{seed}.png"
        if not path.is_file():
            Image.fromarray(render(scene, 256)[0]).save(path)
        examples.append((str(path), "\n".join(describe(scene, i).text for i in range(len(scene.objects)))))
    return examples


class Pages:
    """The app's request handlers over one loaded model; each returns what its page shows."""

    def __init__(self, adapter: ClipAdapter, workspace: Path):
        self.adapter = adapter
        self.workspace = workspace

    def _folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.workspace))

    def _fail(self, error: Exception):
        gradio = _gradio()
        return gradio.Error(str(error), print_exception=False)

    def _inputs(self, image, texts: str) -> tuple[str, list[str]]:
        if image is None:
            raise NtlbError("no image: upload one or pick an example below")
        lines = [line.strip() for line in (texts or "").splitlines() if line.strip()]
        if not lines:
            raise NtlbError("no texts: write one text per line")
        folder = self._folder()
        path = folder / "image.png"
        (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB").save(path)
        return str(path), lines

    def explain(self, image, texts: str, method: str, start_layer_image: int, start_layer_text: int,
                logit_mode: str):
        """Overlays with captions, highlighted words, probabilities over the texts, the JSON and the files."""
        from ..tasks.explaining import explain_files

        try:
            path, lines = self._inputs(image, texts)
            explainer = create(method, start_layer_image=int(start_layer_image),
                               start_layer_text=int(start_layer_text), logit_mode=logit_mode)
            out = Path(path).parent / "explanation"
            data = explain_files(self.adapter, [path], lines, explainer, out)
        except NtlbError as error:
            raise self._fail(error) from None
        gallery = [(str(out / r["overlay"]), f"{r['text']} (p {r['probability']:.2f})")
                   for r in data["pairs"] if r["overlay"]]
        words: list[tuple[str, float | None]] = []
        for record in data["pairs"]:
            words += [(f"{record['text']}:", None)] + [(w, float(v)) for w, v in record["words"] or []]
            words.append(("\n", None))
        probabilities = {r["text"]: r["probability"] for r in data["pairs"]}
        files = [str(out / name) for name in ("explanations.json", "report.html", *data["grids"])]
        return gallery, words, probabilities, data, files

    def words(self, image, text: str, steps: float) -> tuple[dict, list[str], list[tuple[str, str]]]:
        """Token x patch interactions of one image and one text: (state for the other handlers, the text's words,
        the caption's map and each word's region as captioned overlays)."""
        from ..tasks.explaining import explain_files

        try:
            path, lines = self._inputs(image, text)
            if len(lines) != 1:
                raise NtlbError(f"{len(lines)} texts: this tab explains one text, write it on one line")
            out = Path(path).parent / "words"
            kept = []
            data = explain_files(self.adapter, [path], lines, create("interactions", steps=int(steps)), out, keep=kept)
        except NtlbError as error:
            raise self._fail(error) from None
        record = data["pairs"][0]
        gallery = [(str(out / record["overlay"]), f"{record['text']} (the whole text)")]
        gallery += [(str(out / entry["overlay"]), entry["word"]) for entry in record["word_maps"]]
        state = {"explanation": kept[0], "folder": str(out), "record": record}
        return state, [entry["word"] for entry in record["word_maps"]], gallery

    def word_region(self, state: dict | None, word: str | None) -> str | None:
        """The overlay of the region the chosen word matches (the first occurrence of a repeated word)."""
        if not state or not word:
            return None
        entry = next(e for e in state["record"]["word_maps"] if e["word"] == word)
        return str(Path(state["folder"]) / entry["overlay"])

    def box_words(self, state: dict | None, x0: float, y0: float, x1: float, y1: float) -> dict[str, float]:
        """Each word's interaction with the patches inside the box (pixels of the uploaded picture)."""
        try:
            if not state:
                raise NtlbError("explain an image and a text first (the button above)")
            pairs = state["explanation"].region_words(0, 0, (x0, y0, x1, y1))
        except NtlbError as error:
            raise self._fail(error) from None
        return dict(pairs)

    def compare(self, image, texts: str, methods: list[str], logit_mode: str):
        """One figure: the pairs under every chosen explainer."""
        from ..tasks.explaining import compare_explainers

        try:
            path, lines = self._inputs(image, texts)
            out = Path(path).parent / "compare"
            compare_explainers(self.adapter, [path], lines, methods or None, out, logit_mode)
        except NtlbError as error:
            raise self._fail(error) from None
        return str(out / "compare.png")

    def prompts(self, prompts_file, image, label: str):
        """The learned prompt's words (v1..vM, class name) and patches for the predicted and the given class."""
        from ..tasks.prompt_explain import explain_prompt_files
        from ..tasks.prompt_training import load_learner

        try:
            if prompts_file is None:
                raise NtlbError("no prompts file: upload one written by 'ntlb prompt train'")
            path, _ = self._inputs(image, "prompt")
            learner, _ = load_learner(self.adapter, getattr(prompts_file, "name", prompts_file))
            out = Path(path).parent / "prompts"
            data = explain_prompt_files(self.adapter, learner, [path], label.strip() or None, out)
        except NtlbError as error:
            raise self._fail(error) from None
        gallery = [(str(out / r["overlay"]), f"{r['label']} p {r['probability']:.2f}") for r in data["pairs"]
                   if r["overlay"]]
        words: list[tuple[str, float | None]] = []
        for record in data["pairs"]:
            words += [(f"{record['label']}:", None)] + [(w, float(v)) for w, v in record["words"]] + [("\n", None)]
        return gallery, words, data

    def layout(self, world_seed: float | None, layout_file, method: str, explainer: str, steps: float,
               views: float, seed: float):
        """Algorithm 1 on a world layout or a layout JSON: the image, each text's map with its box, the metrics."""
        from ..tasks.layout_generation import LayoutConfig, run_layout
        from ..tasks.layouts import random_world_layout, read_layout

        try:
            if layout_file is not None:
                layout, detector = read_layout(getattr(layout_file, "name", layout_file)), None
            elif world_seed is not None:
                layout, detector = random_world_layout(int(world_seed)), "world"
            else:
                raise NtlbError("no layout: give a world seed or upload a layout JSON")
            config = LayoutConfig(method=method, steps=int(steps), views=int(views), seed=int(seed),
                                  snapshot_every=max(1, int(steps)), explainer=explainer)
            out = self._folder() / "layout"
            generator = default_generator(self.adapter, (layout.height, layout.width))
            options = {"decay": 1.5} if generator == "pixels" else {}
            metrics = run_layout(self.adapter, layout, out, config, generator, options, detector)
        except NtlbError as error:
            raise self._fail(error) from None
        return str(out / "image.png"), str(out / "maps.png"), metrics

    def _generator(self, seed: int):
        """The model's default generator (world-render for the bundled world model) at its size."""
        return generator_for(self.adapter, seed=seed)[1]

    def edit(self, image, text: str, words: str, expl_weight: str, steps: float, seed: float):
        """Text-guided editing: the edited picture, the comparison (input, lambda = 0, ntlb) and the metrics."""
        from ..tasks.text_guidance import EditConfig, edit

        try:
            path, _ = self._inputs(image, text)
            weight = None if str(expl_weight).strip() in ("", "auto") else _number(expl_weight, "lambda")
            config = EditConfig(steps=int(steps), expl_weight=weight, seed=int(seed), snapshot_every=max(1, int(steps)))
            out = Path(path).parent / "edit"
            metrics = edit(self.adapter, self._generator(int(seed)), Image.open(path), text.strip(), out, config,
                           (words or "").split() or None)
        except NtlbError as error:
            raise self._fail(error) from None
        metrics.pop("images")
        return str(out / "edited.png"), str(out / "compare.png"), metrics

    def generate(self, text: str, method: str, steps: float, seed: float):
        """Multi-word text-to-image guidance: the image and its metrics (words before and after)."""
        from ..tasks.text_guidance import GenerateConfig, generate_from_text

        try:
            if not (text or "").strip():
                raise NtlbError("no text: write what the image should show")
            config = GenerateConfig(method=method, steps=int(steps), seed=int(seed), snapshot_every=max(1, int(steps)))
            out = self._folder() / "generate"
            metrics = generate_from_text(self.adapter, self._generator(int(seed)), text.strip(), out, config)
        except NtlbError as error:
            raise self._fail(error) from None
        metrics.pop("images")
        return str(out / "image.png"), metrics


def build_app(adapter: ClipAdapter, workspace: str | Path | None = None, preload: bool = False):
    """The gradio Blocks of the app on a loaded model. `preload`: the page opens on the first example, explained
    (for screenshots)."""
    gradio = _gradio()
    workspace = Path(workspace or tempfile.mkdtemp(prefix="ntlb-app-"))
    workspace.mkdir(parents=True, exist_ok=True)
    pages = Pages(adapter, workspace)
    examples = example_scenes(workspace)
    methods = available()
    shown = [None] * 5  # the explanation the page opens with
    if preload:
        shown = pages.explain(Image.open(examples[0][0]), examples[0][1], "chefer2021", 0, 0, "scaled")
    random = " (random weights: the maps show numerics, not meaning)" if adapter.random_weights else ""
    with gradio.Blocks(title="ntlb: CLIP explains its scores") as app:
        gradio.Markdown(f"## ntlb: why does CLIP score this image with this text?\nModel: **{adapter.name}**{random}."
                        " Relevance of every word and image patch for each score; p is the probability of a text "
                        "among the texts given.")
        with gradio.Tab("Explain"):
            with gradio.Row():
                with gradio.Column(scale=1):
                    image = gradio.Image(type="pil", label="image", value=examples[0][0] if preload else None)
                    texts = gradio.Textbox(label="texts, one per line", lines=4,
                                           value=examples[0][1] if preload else "")
                    method = gradio.Dropdown(methods, value="chefer2021", label="explainer")
                    with gradio.Row():
                        start_image = gradio.Number(0, precision=0, label="start layer, image (-1: last only)")
                        start_text = gradio.Number(0, precision=0, label="start layer, text")
                    logit_mode = gradio.Radio(["scaled", "cosine"], value="scaled", label="score explained")
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
            explain_inputs = [image, texts, method, start_image, start_text, logit_mode]
            explain_outputs = [gallery, words, probabilities, record, files]
            run.click(pages.explain, explain_inputs, explain_outputs, api_name="explain")
            with gradio.Row():
                chosen = gradio.CheckboxGroup(methods, value=methods, label="explainers side by side")
                compare = gradio.Button("Compare explainers")
            figure = gradio.Image(label="pairs x explainers", type="filepath")
            compare.click(pages.compare, [image, texts, chosen, logit_mode], figure, api_name="compare")
        with gradio.Tab("Words and regions"):
            gradio.Markdown("Which region does each word match, and which words does a region match? Token x patch "
                            "interactions (second order, exact up to the path integral). Pick a word to see its "
                            "region; click two corners on the picture (or type them) for the words of a box.")
            with gradio.Row():
                with gradio.Column(scale=1):
                    words_image = gradio.Image(type="pil", label="image (click two corners for a box)",
                                               value=examples[0][0] if preload else None)
                    words_text = gradio.Textbox(label="one text", value="a red circle and a blue square")
                    words_steps = gradio.Slider(1, 20, value=10, step=1, label="points on the path")
                    run_words = gradio.Button("Explain words", variant="primary")
                    word = gradio.Radio([], label="word")
                    with gradio.Row():
                        corners = [gradio.Number(0, label=name) for name in ("x0", "y0", "x1", "y1")]
                    run_box = gradio.Button("Words in this box")
                with gradio.Column(scale=2):
                    region = gradio.Image(label="the region of the chosen word", type="filepath")
                    box_result = gradio.Label(label="words of the box (interaction with its patches)")
                    word_gallery = gradio.Gallery(label="every word's region", columns=4, object_fit="contain")
            words_state = gradio.State(None)
            clicks = gradio.State([])

            def explain_words(image, text, steps):
                state, choices, gallery = pages.words(image, text, steps)
                return state, gradio.update(choices=choices, value=None), gallery, gallery[0][0]

            def corner(points, event):
                points = ([*points, event.index] if len(points) < 2 else [event.index])[-2:]
                if len(points) < 2:
                    return points, *(gradio.update() for _ in corners)
                (ax, ay), (bx, by) = points
                return points, min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

            corner.__annotations__["event"] = gradio.SelectData  # gradio passes the click by this annotation

            run_words.click(explain_words, [words_image, words_text, words_steps],
                            [words_state, word, word_gallery, region], api_name="words")
            word.change(pages.word_region, [words_state, word], region)
            words_image.select(corner, [clicks], [clicks, *corners])
            run_box.click(pages.box_words, [words_state, *corners], box_result, api_name="box_words")
        with gradio.Tab("Prompts"):
            with gradio.Row():
                with gradio.Column():
                    prompts_file = gradio.File(label="prompts file (ntlb prompt train --out)")
                    prompt_image = gradio.Image(type="pil", label="image")
                    label = gradio.Textbox(label="true class (optional)")
                    explain_prompts = gradio.Button("Explain the prompts", variant="primary")
                with gradio.Column():
                    prompt_gallery = gradio.Gallery(label="patches", columns=2)
                    prompt_words = gradio.HighlightedText(label="v1..vM, class name")
                    prompt_record = gradio.JSON(label="prompt_explanations.json")
            explain_prompts.click(pages.prompts, [prompts_file, prompt_image, label],
                                  [prompt_gallery, prompt_words, prompt_record], api_name="prompts")
        with gradio.Tab("Layout"):
            with gradio.Row():
                with gradio.Column():
                    world_seed = gradio.Number(3, precision=0, label="world layout seed (or upload a layout JSON)")
                    layout_file = gradio.File(label="layout JSON (width, height, objects: box + text)")
                    layout_method = gradio.Radio(["ntlb", "masked", "masked+full"], value="ntlb", label="method")
                    layout_explainer = gradio.Dropdown(methods, value="chefer2021", label="explainer of the loss")
                    steps = gradio.Slider(2, 400, value=100, step=1, label="steps")
                    views = gradio.Slider(1, 8, value=4, step=1, label="augmented views per step")
                    layout_seed = gradio.Number(0, precision=0, label="seed")
                    generate = gradio.Button("Generate", variant="primary")
                with gradio.Column():
                    generated = gradio.Image(label="generated", type="filepath")
                    maps = gradio.Image(label="each text's map and box", type="filepath")
                    metrics = gradio.JSON(label="metrics.json")

            tracker = gradio.Progress(track_tqdm=True)  # the runner's progress bar, shown in the page

            def layout_with_progress(world_seed, layout_file, method, explainer, steps, views, seed,
                                     progress=tracker):
                return pages.layout(world_seed, layout_file, method, explainer, steps, views, seed)

            generate.click(layout_with_progress,
                           [world_seed, layout_file, layout_method, layout_explainer, steps, views, layout_seed],
                           [generated, maps, metrics], api_name="layout")
        with gradio.Tab("Edit"):
            with gradio.Row():
                with gradio.Column():
                    edit_image = gradio.Image(type="pil", label="image to edit")
                    edit_text = gradio.Textbox(label="text (what the edited image should show)")
                    edit_words = gradio.Textbox(label="semantic words, space separated (empty: the content words)")
                    edit_weight = gradio.Textbox("auto", label="lambda of the word term ('auto': the paper's sweep)")
                    edit_steps = gradio.Slider(2, 300, value=60, step=1, label="steps")
                    edit_seed = gradio.Number(0, precision=0, label="seed")
                    run_edit = gradio.Button("Edit", variant="primary")
                    gradio.Examples([[path] for path, _ in examples], [edit_image])
                with gradio.Column():
                    edited = gradio.Image(label="edited", type="filepath")
                    compared = gradio.Image(label="input, lambda = 0, ntlb (with their words)", type="filepath")
                    edit_metrics = gradio.JSON(label="metrics.json")

            def edit_with_progress(image, text, words, weight, steps, seed, progress=tracker):
                return pages.edit(image, text, words, weight, steps, seed)

            run_edit.click(edit_with_progress, [edit_image, edit_text, edit_words, edit_weight, edit_steps, edit_seed],
                           [edited, compared, edit_metrics], api_name="edit")
        with gradio.Tab("Generate"):
            with gradio.Row():
                with gradio.Column():
                    generate_text = gradio.Textbox("a green circle and a blue square", label="text")
                    generate_method = gradio.Radio(["ntlb", "clip"], value="ntlb",
                                                   label="ntlb: CLIP + the word term; clip: CLIP alone")
                    generate_steps = gradio.Slider(2, 300, value=60, step=1, label="steps")
                    generate_seed = gradio.Number(0, precision=0, label="seed")
                    run_generate = gradio.Button("Generate", variant="primary")
                with gradio.Column():
                    text_image = gradio.Image(label="generated", type="filepath")
                    generate_metrics = gradio.JSON(label="metrics.json")

            def generate_with_progress(text, method, steps, seed, progress=tracker):
                return pages.generate(text, method, steps, seed)

            run_generate.click(generate_with_progress, [generate_text, generate_method, generate_steps, generate_seed],
                               [text_image, generate_metrics], api_name="generate")
    return app


def serve(adapter: ClipAdapter, host: str = "127.0.0.1", port: int = 7860, preload: bool = False,
          block: bool = True):
    """Start the app on host:port (loopback by default); returns the running Blocks when `block` is False."""
    app = build_app(adapter, preload=preload)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
               show_error=True)
    return app
