"""`ntlb app`: explore explanations interactively in the browser."""

from __future__ import annotations

import argparse
import socket

from ..config.world import AppConfig
from ..errors import NtlbError
from .common import add_command, add_model_arguments, model_adapter
from .fields import add_config, read_config


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

    config = read_config(AppConfig, args)
    check_port(config.host, config.port)
    adapter = model_adapter(args)
    app = serve(adapter, config.host, config.port, config.preload, block=False)
    print(f"ntlb app on http://{config.host}:{config.port} with {adapter.name} (Ctrl-C stops it)")
    app.block_thread()
    return 0


def add_commands(commands) -> None:
    app = add_command(commands, "app", "explore explanations in the browser (pip install 'ntlb[app]')",
                      "A local gradio app: upload or pick images, type texts, switch explainers and layers; "
                      "prompts and layout generation tabs.")
    add_model_arguments(app)
    add_config(app, AppConfig)
    app.set_defaults(run=cmd_app)
