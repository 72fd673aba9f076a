"""The Prompts tab: a prompts file from `ntlb prompt train`, its words (v1..vM, class name) and patches."""

from __future__ import annotations

from pathlib import Path

from ..config.prompts import PromptExplainInputs
from ..errors import NtlbError
from .common import Session
from .widgets import Widgets


def prompts(session: Session, prompts_file, image, label: str | None):
    """The learned prompt's words and patches for the predicted and the given class."""
    from ..tasks.prompting.explaining import explain_prompt_files
    from ..tasks.prompting.training import load_learner

    try:
        if prompts_file is None:
            raise NtlbError("no prompts file: upload one written by 'ntlb prompt train'")
        path, _ = session.inputs(image, "prompt")
        learner, _ = load_learner(session.adapter, getattr(prompts_file, "name", prompts_file))
        out = Path(path).parent / "prompts"
        data = explain_prompt_files(session.adapter, learner, [path], (label or "").strip() or None, out)
    except NtlbError as error:
        raise session.fail(error) from None
    gallery = [(str(out / r["overlay"]), f"{r['label']} p {r['probability']:.2f}") for r in data["pairs"]
               if r["overlay"]]
    words: list[tuple[str, float | None]] = []
    for record in data["pairs"]:
        words += [(f"{record['label']}:", None)] + [(w, float(v)) for w, v in record["words"]] + [("\n", None)]
    return gallery, words, data


def build(gradio, session: Session, widgets: Widgets, examples: list[tuple[str, str]], preload: bool) -> None:
    """The tab's widgets and events (api name prompts)."""
    with gradio.Tab("Prompts"):
        with gradio.Row():
            with gradio.Column():
                prompts_file = widgets("prompts", PromptExplainInputs, "prompts")
                image = gradio.Image(type="pil", label="image")
                label = widgets("prompts", PromptExplainInputs, "label")
                run = gradio.Button("Explain the prompts", variant="primary")
            with gradio.Column():
                gallery = gradio.Gallery(label="patches", columns=2)
                words = gradio.HighlightedText(label="v1..vM, class name")
                record = gradio.JSON(label="prompt_explanations.json")

        def run_prompts(prompts_file, image, label):
            return prompts(session, prompts_file, image, label)

        run.click(run_prompts, [prompts_file, image, label], [gallery, words, record], api_name="prompts")
