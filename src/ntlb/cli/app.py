"""`ntlb app`: explore explanations interactively in the browser."""

from __future__ import annotations

import argparse

from .common import add_command, add_model_arguments, load_adapter


def cmd_app(args: argparse.Namespace) -> int:
    from ..app import serve

    adapter = load_adapter(args.model, args.pretrained, args.device, tokenizer=args.tokenizer)
    print(f"ntlb app on http://{args.host}:{args.port} with {adapter.name} (Ctrl-C stops it)")
    serve(adapter, args.host, args.port, args.preload)
    return 0


def add_commands(commands) -> None:
    app = add_command(commands, "app", "explore explanations in the browser (pip install 'ntlb[app]')",
                      "A local gradio app: upload or pick images, type texts, switch explainers and layers; "
                      "prompts and layout generation tabs.")
    add_model_arguments(app)
    app.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 to reach it from elsewhere)")
    app.add_argument("--port", type=int, default=7860, help="port to serve on")
    app.add_argument("--preload", action="store_true", help="open the page on the first example, explained")
    app.set_defaults(run=cmd_app)
