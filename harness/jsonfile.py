"""Writing the harness's JSON state and run files so that a reader never sees half a file.

Status files are read while they are rewritten (``harness status`` during a run, the live view during
an experiment), so every write goes to a temporary file that replaces the old one in one rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_json_atomic"]


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
