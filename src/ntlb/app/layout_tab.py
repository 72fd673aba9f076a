"""The Layout tab: Algorithm 1 on a world layout or a layout JSON, with its progress."""

from __future__ import annotations

from ..config.guidance import GeneratorChoice, snapshots_within
from ..config.layout import LayoutConfig, LayoutInputs
from ..errors import NtlbError
from .common import Session
from .widgets import Widgets, number


def layout(session: Session, world_seed, layout_file, method: str, explainer: str, steps, views, seed):
    """The image, each text's map with its box, the metrics."""
    from ..tasks.guidance.optimisation import default_generator
    from ..tasks.layouts.generation import run_layout
    from ..tasks.layouts.layout import random_world_layout, read_layout

    try:
        if layout_file is not None:
            chosen, detector = read_layout(getattr(layout_file, "name", layout_file)), None
        elif world_seed is not None:
            chosen, detector = random_world_layout(int(world_seed)), "world"
        else:
            raise NtlbError("no layout: give a world seed or upload a layout JSON")
        config = snapshots_within(LayoutConfig(method=method, steps=number(steps), views=number(views),
                                               seed=number(seed), explainer=explainer), every=number(steps))
        out = session.folder() / "layout"
        generator = default_generator(session.adapter, (chosen.height, chosen.width))
        metrics = run_layout(session.adapter, chosen, out, config, generator, GeneratorChoice().options(generator),
                             detector)
    except NtlbError as error:
        raise session.fail(error) from None
    return str(out / "image.png"), str(out / "maps.png"), metrics


def build(gradio, session: Session, widgets: Widgets, examples: list[tuple[str, str]], preload: bool) -> None:
    """The tab's widgets and events (api name layout)."""
    with gradio.Tab("Layout"):
        with gradio.Row():
            with gradio.Column():
                world_seed = widgets("layout", LayoutInputs, "world_seed")
                layout_file = gradio.File(label="layout JSON (width, height, objects: box + text)")
                method = widgets("layout", LayoutConfig, "method")
                explainer = widgets("layout", LayoutConfig, "explainer", label="explainer of the loss")
                steps = widgets("layout", LayoutConfig, "steps")
                views = widgets("layout", LayoutConfig, "views")
                seed = widgets("layout", LayoutConfig, "seed")
                run = gradio.Button("Generate", variant="primary")
            with gradio.Column():
                generated = gradio.Image(label="generated", type="filepath")
                maps = gradio.Image(label="each text's map and box", type="filepath")
                metrics = gradio.JSON(label="metrics.json")

        def with_progress(world_seed, layout_file, method, explainer, steps, views, seed,
                       progress=gradio.Progress(track_tqdm=True)):  # noqa: B008 (gradio reads the default)
            return layout(session, world_seed, layout_file, method, explainer, steps, views, seed)

        run.click(with_progress, [world_seed, layout_file, method, explainer, steps, views, seed],
                  [generated, maps, metrics], api_name="layout")
