"""How commands print: rich for people, plain JSON for `--json`."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# soft_wrap: long lines are not broken, so a command or path in a message stays whole.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Write `data` as JSON on stdout (lists as top-level arrays, as DESIGN.md shapes them)."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
