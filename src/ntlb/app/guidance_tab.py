"""The Edit and Generate tabs: text-guided editing with the semantic-word loss and the automatic lambda, and
multi-word text-to-image guidance, each with its progress."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..config.guidance import (
    EditConfig,
    EditInputs,
    GenerateConfig,
    GenerateInputs,
    parse_expl_weight,
    snapshots_within,
)
from ..errors import NtlbError
from .common import Session
from .widgets import Widgets, number


def _generator(session: Session, seed: int):
    """The model's default generator (world-render for the bundled world model) at its size."""
    from ..tasks.guidance.optimisation import generator_for

    return generator_for(session.adapter, seed=seed)[1]


def _expl_weight(value) -> float | None:
    """The typed lambda: empty or 'auto' is the sweep; a one-line error in the page's words (not Python's)."""
    text = str(value if value is not None else "").strip()
    try:
        return parse_expl_weight(text or "auto")
    except Exception:
        raise NtlbError(f"lambda '{value}': write 'auto' or a number such as 1.5") from None


def edit(session: Session, image, text: str, words: str, expl_weight: str, steps, seed):
    """The edited picture, the comparison (input, lambda = 0, ntlb) and the metrics."""
    from ..tasks.guidance.editing import edit as run_edit

    try:
        path, _ = session.inputs(image, text)
        config = snapshots_within(EditConfig(steps=number(steps), expl_weight=_expl_weight(expl_weight),
                                             seed=number(seed)), every=number(steps))
        out = Path(path).parent / "edit"
        metrics = run_edit(session.adapter, _generator(session, config.seed), Image.open(path), text.strip(), out,
                           config, (words or "").split() or None)
    except NtlbError as error:
        raise session.fail(error) from None
    metrics.pop("images")
    return str(out / "edited.png"), str(out / "compare.png"), metrics


def generate(session: Session, text: str, method: str, steps, seed):
    """The image and its metrics (words before and after)."""
    from ..tasks.guidance.editing import generate_from_text

    try:
        if not (text or "").strip():
            raise NtlbError("no text: write what the image should show")
        config = snapshots_within(GenerateConfig(method=method, steps=number(steps), seed=number(seed)),
                                  every=number(steps))
        out = session.folder() / "generate"
        metrics = generate_from_text(session.adapter, _generator(session, config.seed), text.strip(), out, config)
    except NtlbError as error:
        raise session.fail(error) from None
    metrics.pop("images")
    return str(out / "image.png"), metrics


def build_edit(gradio, session: Session, widgets: Widgets, examples: list[tuple[str, str]], preload: bool) -> None:
    """The Edit tab (api name edit)."""
    with gradio.Tab("Edit"):
        with gradio.Row():
            with gradio.Column():
                image = gradio.Image(type="pil", label="image to edit")
                text = gradio.Textbox(label="text (what the edited image should show)")
                words = widgets("edit", EditInputs, "words", label="semantic words, space separated (empty: the "
                                                                   "content words)")
                weight = widgets("edit", EditConfig, "expl_weight")
                steps = widgets("edit", EditConfig, "steps")
                seed = widgets("edit", EditConfig, "seed")
                run = gradio.Button("Edit", variant="primary")
                gradio.Examples([[path] for path, _ in examples], [image])
            with gradio.Column():
                edited = gradio.Image(label="edited", type="filepath")
                compared = gradio.Image(label="input, lambda = 0, ntlb (with their words)", type="filepath")
                metrics = gradio.JSON(label="metrics.json")

        def with_progress(image, text, words, weight, steps, seed,
                     progress=gradio.Progress(track_tqdm=True)):  # noqa: B008 (gradio reads the default)
            return edit(session, image, text, words, weight, steps, seed)

        run.click(with_progress, [image, text, words, weight, steps, seed], [edited, compared, metrics],
                  api_name="edit")


def build_generate(gradio, session: Session, widgets: Widgets, examples: list[tuple[str, str]],
                   preload: bool) -> None:
    """The Generate tab (api name generate)."""
    with gradio.Tab("Generate"):
        with gradio.Row():
            with gradio.Column():
                text = widgets("generate", GenerateInputs, "text")
                method = widgets("generate", GenerateConfig, "method")
                steps = widgets("generate", GenerateConfig, "steps")
                seed = widgets("generate", GenerateConfig, "seed")
                run = gradio.Button("Generate", variant="primary")
            with gradio.Column():
                image = gradio.Image(label="generated", type="filepath")
                metrics = gradio.JSON(label="metrics.json")

        def with_progress(text, method, steps, seed,
                         progress=gradio.Progress(track_tqdm=True)):  # noqa: B008 (gradio reads the default)
            return generate(session, text, method, steps, seed)

        run.click(with_progress, [text, method, steps, seed], [image, metrics], api_name="generate")
