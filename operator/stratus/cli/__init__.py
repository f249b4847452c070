"""The `stratus` command (also `kubectl stratus`, as a kubectl plugin)."""

from stratus.cli.app import build_parser, main, plugin_main
from stratus.cli.migrate import dry_run

__all__ = ["build_parser", "dry_run", "main", "plugin_main"]
