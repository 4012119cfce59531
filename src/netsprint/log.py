"""Logging set-up shared by the CLI and servers.

Library modules only call `logging.getLogger(__name__)`; the CLI decides where logs go.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(level: str | int = "INFO") -> None:
    """Send netsprint's logs to stderr through rich, once."""
    root = logging.getLogger("netsprint")
    if any(isinstance(h, RichHandler) for h in root.handlers):
        root.setLevel(level)
        return
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
