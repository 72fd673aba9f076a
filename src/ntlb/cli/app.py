"""`ntlb app`: explore explanations interactively in the browser."""

from __future__ import annotations

import argparse
import socket

from ..errors import NtlbError
from .common import add_command, add_model_arguments, load_adapter


def check_port(host: str, port: int) -> None:
    """Refuse, before the model loads, a port another program listens on (or an address this machine lacks)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise NtlbError(f"--host {host} is not an address of this machine: use 127.0.0.1, or 0.0.0.0 for every "
                        "interface") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: a closed port is free
        try:
            probe.bind(address)
        except OSError as err:
            raise NtlbError(f"port {port} on {host} is busy ({err.strerror}): another program serves there; pick a "
                            f"free one with --port, e.g. --port {port + 1}") from None


def cmd_app(args: argparse.Namespace) -> int:
    from ..app import serve

    check_port(args.host, args.port)
    adapter = load_adapter(args.model, args.pretrained, args.device, tokenizer=args.tokenizer)
    app = serve(adapter, args.host, args.port, args.preload, block=False)
    print(f"ntlb app on http://{args.host}:{args.port} with {adapter.name} (Ctrl-C stops it)")
    app.block_thread()
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
