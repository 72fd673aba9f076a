"""The app's widgets generated from the same config fields as the command line (ntlb.config): type -> widget,
choices -> dropdown or radio, default -> value, help -> label. A field's `app` metadata may change the widget, its
range, or its value (with the reason in `why`); every widget built is recorded, so a test compares each one with
its field."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import default_of


def field_of(config: type, name: str) -> dataclasses.Field:
    return next(item for item in dataclasses.fields(config) if item.name == name)


def shown_value(item: dataclasses.Field) -> Any:
    """The value a widget opens with: the field's default, or its `app` value; a spec field shows its method."""
    app = item.metadata.get("app", {})
    if "value" in app:
        return app["value"]
    if "explainer" in item.metadata:
        return item.metadata["explainer"]
    return default_of(item)


class Widgets:
    """Builds widgets from config fields and keeps (tab, config, field) -> component for the defaults test."""

    def __init__(self, gradio):
        self.gradio = gradio
        self.built: list[tuple[str, type, str, Any]] = []

    def __call__(self, tab: str, config: type, name: str, **overrides: Any):
        """The widget of `config`'s field `name` in `tab` (`overrides`: layout-only gradio arguments)."""
        gradio, item = self.gradio, field_of(config, name)
        app, meta = item.metadata.get("app", {}), item.metadata
        label = overrides.pop("label", None) or app.get("label") or meta.get("help") or name
        value = overrides.pop("value", shown_value(item))
        kind = app.get("widget")
        base = item.type.replace(" | None", "") if isinstance(item.type, str) else item.type
        choices = meta.get("choices")
        if kind == "text":
            widget = gradio.Textbox(value="" if value is None else str(value), label=label, **overrides)
        elif kind == "file":
            widget = gradio.File(label=label, **overrides)
        elif kind == "slider":
            widget = gradio.Slider(app["minimum"], app["maximum"], value=value, step=app.get("step", 1), label=label,
                                   **overrides)
        elif choices is not None and base != "list[str]":
            names = list(choices)
            maker = gradio.Radio if len(names) <= 4 else gradio.Dropdown
            widget = maker(names, value=value, label=label, **overrides)
        elif base == "bool":
            widget = gradio.Checkbox(value=value, label=label, **overrides)
        elif base in ("int", "float"):
            widget = gradio.Number(value, precision=0 if base == "int" else None, label=label, **overrides)
        else:
            widget = gradio.Textbox(value="" if value is None else str(value), label=label, **overrides)
        self.built.append((tab, config, name, widget))
        return widget


def number(value, default=None):
    """An integer from a Number or Slider widget; an empty one is None (the method's or runner's default)."""
    return default if value is None or value == "" else int(value)
