"""Finding a profile's shape and users: a cheap static check anywhere, the real import in a load process.

The static check runs in the process that asks for load (the CLI, the fault runner) and never imports the
profile, because importing a locustfile imports Locust, which monkey-patches the whole process.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

__all__ = ["check_profile_file", "load_profile"]

_HINT = "see loadprofiles/steady.py for a minimal profile"


def check_profile_file(path: Path) -> Path:
    """The profile's absolute path, after checking it exists, is Python and defines at least one class."""
    path = Path(path)
    if not path.exists():
        near = sorted(p.name for p in path.parent.glob("*.py")) if path.parent.is_dir() else []
        raise ConfigError(
            f"profile {path} does not exist"
            + (f"; profiles in {path.parent}: {', '.join(near)}" if near else f"; {_HINT}")
        )
    if not path.is_file() or path.suffix != ".py":
        raise ConfigError(f"profile {path} must be a Python file (a locustfile ending in .py); {_HINT}")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"profile {path} line {exc.lineno}: {exc.msg}") from None
    imports_shape = any(isinstance(node, ast.ImportFrom | ast.Import) for node in tree.body)
    if not any(isinstance(node, ast.ClassDef) for node in tree.body) and not imports_shape:
        raise ConfigError(f"profile {path} defines no LoadTestShape class; {_HINT}")
    return path.absolute()


def load_profile(path: Path) -> tuple[list[type[Any]], type[Any]]:
    """Import the profile (in a load process only) and return its user classes and its one shape class.

    The users default to ``harness.load.users.TritonUser`` when the profile defines none.
    """
    from locust import LoadTestShape, User

    from harness.load.users import TritonUser

    path = check_profile_file(path)
    name = f"harness_profile_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"profile {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"profile {path} failed to import: {exc.__class__.__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent))
    members = [v for v in vars(module).values() if inspect.isclass(v)]
    shapes = [c for c in members if issubclass(c, LoadTestShape) and not getattr(c, "abstract", True)]
    if len(shapes) > 1:
        own = [c for c in shapes if c.__module__ == name]
        shapes = own if len(own) == 1 else shapes
    if not shapes:
        raise ConfigError(f"profile {path} defines no LoadTestShape subclass (a class with tick()); {_HINT}")
    if len(shapes) > 1:
        raise ConfigError(
            f"profile {path} defines several shapes ({', '.join(c.__name__ for c in shapes)}); "
            "keep one per file"
        )
    users = [c for c in members if issubclass(c, User) and getattr(c, "abstract", True) is False]
    return users or [TritonUser], shapes[0]
