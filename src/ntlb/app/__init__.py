"""`ntlb app`: explore explanations in the browser (gradio). The model is loaded once; each request runs the same
library runners as the command line (one batched explainer call per request) and offers the same PNG / JSON /
HTML for download. Bad input shows its one-line message in the page, never a stack trace. The widgets are built
from the runners' config fields (`widgets.py`), as the command line's options are, so both open on the same
defaults.

One module per tab: Explain (images x texts, any explainer, its start layers and score; a side-by-side of
explainers), Words and regions (token x patch interactions: a word's region, a box's words), Prompts (a prompts
file from `ntlb prompt train`), Layout (generation from a world seed or a layout JSON), Edit (text-guided editing
with the automatic lambda) and Generate (multi-word text-to-image guidance), the long ones showing their progress.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..models.adapter import ClipAdapter
from . import explain_tab, guidance_tab, layout_tab, prompts_tab, words_tab
from .common import Session, example_scenes, gradio_module
from .widgets import Widgets

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app runs offline

TABS = (explain_tab.build, words_tab.build, prompts_tab.build, layout_tab.build, guidance_tab.build_edit,
        guidance_tab.build_generate)


def build_app(adapter: ClipAdapter, workspace: str | Path | None = None, preload: bool = False):
    """The gradio Blocks of the app on a loaded model. `preload`: the page opens on the first example, explained
    (for screenshots). The Blocks' `ntlb_widgets` lists (tab, config, field, widget) of every generated widget."""
    gradio = gradio_module()
    workspace = Path(workspace or tempfile.mkdtemp(prefix="ntlb-app-"))
    workspace.mkdir(parents=True, exist_ok=True)
    session = Session(adapter, workspace)
    examples = example_scenes(workspace)
    widgets = Widgets(gradio)
    random = " (random weights: the maps show numerics, not meaning)" if adapter.random_weights else ""
    with gradio.Blocks(title="ntlb: CLIP explains its scores") as app:
        gradio.Markdown(f"## ntlb: why does CLIP score this image with this text?\nModel: **{adapter.name}**{random}."
                        " Relevance of every word and image patch for each score; p is the probability of a text "
                        "among the texts given.")
        for build in TABS:
            build(gradio, session, widgets, examples, preload)
    app.ntlb_widgets = widgets.built
    return app


def serve(adapter: ClipAdapter, host: str = "127.0.0.1", port: int = 7860, preload: bool = False,
          block: bool = True):
    """Start the app on host:port (loopback by default); returns the running Blocks when `block` is False."""
    app = build_app(adapter, preload=preload)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
               show_error=True)
    return app
