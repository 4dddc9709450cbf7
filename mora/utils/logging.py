"""The package logger. Library code logs through ``get_logger``; it never prints."""

from __future__ import annotations

import logging

LOGGER_NAME = "mora"


def get_logger(name: str | None = None) -> logging.Logger:
    """``get_logger(__name__)`` inside the package and ``get_logger("x")`` both land under "mora"."""
    if not name or name == LOGGER_NAME:
        return logging.getLogger(LOGGER_NAME)
    if name.startswith(LOGGER_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Configure a plain stderr handler for command-line entry points (not for library use)."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
