"""One exception tree for the whole harness.

The CLI turns each class into a documented exit code, so a script can tell bad input (fix your files)
from a broken environment (install something) from a platform that misbehaved (look at the service).
Messages say what was wrong, where, and what to do about it.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "ConfigError",
    "EnvironmentProblem",
    "FaultError",
    "HarnessError",
    "PlatformError",
    "describe_validation_error",
]


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""

    exit_code = 1


class ConfigError(HarnessError):
    """Bad input: an experiment, profile, manifest, settings file or command-line value."""

    exit_code = 2


class EnvironmentProblem(HarnessError):
    """The machine lacks something: a system package, a free port, the right Python."""

    exit_code = 3


class PlatformError(HarnessError):
    """The platform is not up, is half dead, or did not become ready."""

    exit_code = 4


class FaultError(HarnessError):
    """A fault could not be injected or rolled back."""

    exit_code = 5


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem of a pydantic model (fault arguments, run settings, manifests): the field, what is
    wrong, and the value that was given. Here, beside the errors, because every floor validates its input."""
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ()))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            lines.append(f"{where}: unknown argument")
        elif not where:
            lines.append(message)
        elif err.get("type") in ("value_error", "assertion_error"):
            lines.append(f"{where}: {message}")
        else:
            lines.append(f"{where}: {message} (got {err.get('input')!r})")
    return lines
