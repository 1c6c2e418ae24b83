"""Reading experiment documents safely, and the run settings an experiment carries, parsed once.

Both run before anything starts: a malformed file of any depth or size is a ConfigError naming the file
(never a traceback), and every ``harness_*`` setting, the steady-state objective and the load profile are
checked with one typed model, so a typo is reported at once instead of when the load starts.

Chaos Toolkit hands its activities and the harness control only the experiment's ``configuration``
mapping, so that mapping is how the settings travel; ``RunSettings.from_configuration`` is the one place
that reads it (the platform's keys through ``PlatformRef``), and everything past it reads attributes whose
defaults are defined here and nowhere else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import ConfigError, describe_validation_error
from harness.load.settings import Connections, LoadSettings
from harness.platforms.registry import PLATFORM_KEYS, PlatformRef

if TYPE_CHECKING:
    from harness.load.requests import RequestOptions

__all__ = ["KNOWN_KEYS", "MAX_DEPTH", "MAX_FILE_BYTES", "RunSettings", "check_run_settings", "load_document",
           "safe_yaml_value"]

MAX_FILE_BYTES = 16 << 20  # an experiment is a few KB; 16 MiB is certainly a mistake
MAX_DEPTH = 64  # Chaos Toolkit's own code recurses through the document


def _depth(value: Any) -> int:
    """Nesting depth, computed without recursion (the document may be nested deeper than the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, Mapping):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _parse(text: str, json_first: bool) -> Any:
    if json_first:
        return json.loads(text)
    return yaml.safe_load(text)


def load_document(path: Path, what: str = "experiment") -> Any:
    """A YAML or JSON document, or a ConfigError that says what is wrong with the file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: {size} bytes is far too large for an {what} file "
                              f"(limit {MAX_FILE_BYTES >> 20} MiB); give the right file")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); give an {what} file path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8 expected); give an {what} file (YAML or JSON)") from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        doc = _parse(text, kind == "JSON")
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be an {what} (more than {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if _depth(doc) > MAX_DEPTH:
        raise ConfigError(f"{path}: nested too deeply to be an {what} (more than {MAX_DEPTH} levels)")
    return doc


def safe_yaml_value(text: str) -> Any:
    """A ``--var`` value read as a YAML scalar; anything that does not parse (or nests absurdly) stays a string."""
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return text
    return text if _depth(value) > MAX_DEPTH else value


class RunSettings(BaseModel):
    """The ``harness_*`` settings and the steady-state objective of an experiment's configuration.

    Built by ``from_configuration`` (or ``parse``, which also says what was wrong); a key that is missing or
    null takes the default given here.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    harness_profile: str = "loadprofiles/steady.py"
    harness_protocol: Literal["http", "grpc"] = "http"
    harness_connections: Connections = "kept"  # HTTP: keep-alive pool, or one per request
    harness_users: int = Field(default=8, ge=1, le=100_000, strict=True)
    harness_rate: float = Field(default=0.0, ge=0, le=1_000_000)
    harness_workers: int = Field(default=0, ge=0, le=256, strict=True)
    harness_warmup_s: float = Field(default=5.0, ge=0, le=3600)
    harness_observation_s: float = Field(default=20.0, ge=0, le=86_400)
    harness_load: bool | Literal["true", "false", "0", "1", "no", "yes", "off", "on"] = True
    harness_model: str | list[str] | None = None  # NAME[:WEIGHT], several comma-separated
    harness_batch: int = Field(default=1, ge=1, le=1 << 16, strict=True)
    harness_shape: str | list[str] | None = None  # [MODEL:]INPUT=3x224x224
    harness_input_data: str | list[str] | None = None  # [MODEL=]FILE, a sample file (docs/load.md)
    harness_variable_dim: int = Field(default=0, ge=0, le=1 << 20, strict=True)
    harness_load_from: Literal["cluster", "local"] | None = None  # kubernetes: default cluster
    harness_load_image: str | None = None  # kubernetes: image of the in-cluster load pods
    max_error_ratio: float | None = Field(default=None, ge=0, le=1)
    max_p99_ms: float | None = Field(default=None, gt=0, le=3_600_000)
    # What the commands (harness run, suite, gameday) add for each repetition; a plain ``chaos run`` has none.
    harness_fault: str | None = None  # the label reports file the figures under
    harness_required_tier: str | None = None
    harness_experiment_name: str | None = None
    harness_experiment_file: str | None = None
    harness_run_id: str | None = None  # set by the first activity when missing, so the others agree
    harness_run_dir: str | None = None
    # The platform the activities act on (harness_platform, harness_state_dir, ...), read by PlatformRef.
    platform: PlatformRef = Field(default_factory=PlatformRef, exclude=True)

    @model_validator(mode="after")
    def _connections_are_http(self) -> RunSettings:
        """What the load would refuse is refused here, before anything runs, by the load's own rule
        (``LoadSettings``). Of the fields it is given, this model checks all but one pairing itself: a connection
        per request over gRPC, which multiplexes every request over one channel."""
        try:
            self.load_settings()
        except ConfigError as exc:
            raise ValueError(f"harness_connections: {str(exc).removeprefix('bad load settings: ')}") from None
        return self

    @model_validator(mode="after")
    def _samples_stay_here(self) -> RunSettings:
        """In-cluster load pods cannot read a sample file on this machine: refused before anything runs."""
        if self.harness_load_from == "cluster" and self.harness_input_data:
            raise ValueError("harness_input_data: sample data files are not shipped to the in-cluster load pods; "
                             "give variable dimensions with harness_shape/harness_variable_dim, or run the load "
                             "from this machine with --load-from local")
        return self

    @classmethod
    def parse(cls, configuration: Mapping[str, Any]) -> tuple[RunSettings, list[str]]:
        """The settings and every problem of ``configuration``; a value with a problem is replaced by its
        default, so the other checks of a plan (profile, observation) still run and all problems are
        reported at once."""
        values = {k: v for k, v in configuration.items() if k in _SETTING_KEYS and v is not None}
        platform = PlatformRef.from_configuration(configuration)
        problems: list[str] = []
        while True:
            try:
                return cls.model_validate({**values, "platform": platform}), problems
            except ValidationError as exc:
                problems += describe_validation_error(exc)
                bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} or set(_CROSS_CHECKED)
                if not bad & set(values):  # nothing left to drop: the defaults
                    return cls(platform=platform), problems
                values = {k: v for k, v in values.items() if k not in bad}

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any]) -> RunSettings:
        """The settings of a Chaos Toolkit configuration, or a ConfigError listing every problem (a plain
        ``chaos run`` reaches the control unvalidated; ``harness run`` has checked the same model already)."""
        settings, problems = cls.parse(configuration)
        if problems:
            raise ConfigError("the experiment's configuration is invalid; nothing was injected:\n  - "
                              + "\n  - ".join(f"configuration {line}" for line in problems))
        return settings

    @property
    def load_enabled(self) -> bool:
        return str(self.harness_load).lower() not in ("false", "0", "no", "off")

    @property
    def load_in_cluster(self) -> bool:
        """Whether this run's load goes in the cluster: the default on Kubernetes, unless ``local``."""
        return self.platform.name == "kubernetes" and (self.harness_load_from or "cluster") == "cluster"

    @property
    def profile(self) -> Path:
        return Path(self.harness_profile)

    def load_settings(self) -> LoadSettings:
        """What every load process of the run is told: protocol, users and rate; it runs until stopped."""
        return LoadSettings(protocol=self.harness_protocol, users=self.harness_users, rate=self.harness_rate,
                            duration_s=None, connections=self.harness_connections)

    def request_options(self) -> RequestOptions | None:
        """Which models the load sends to, and with what inputs (``harness_model``, ``harness_batch``,
        ``harness_shape``, ``harness_input_data``, ``harness_variable_dim``); None where the configuration gives
        none of them: as the environment says, and otherwise the only model the server has ready."""
        from harness.load.requests import RequestOptions  # numpy: only where requests are planned

        if not self.model_fields_set & _REQUEST_KEYS:
            return None

        def strings(value: str | list[str] | None) -> list[str]:
            return [] if value is None else [str(v) for v in (value if isinstance(value, list) else [value])]

        return RequestOptions.parse(models=strings(self.harness_model), batch=self.harness_batch,
                                    shapes=strings(self.harness_shape), input_data=strings(self.harness_input_data),
                                    variable_dim=self.harness_variable_dim)


_SETTING_KEYS = frozenset(RunSettings.model_fields) - {"platform"}
# what the model's own validators refuse when no field is named
_CROSS_CHECKED = ("harness_input_data", "harness_connections")
_REQUEST_KEYS = frozenset({"harness_model", "harness_batch", "harness_shape", "harness_input_data",
                           "harness_variable_dim"})
KNOWN_KEYS = _SETTING_KEYS | PLATFORM_KEYS | {"harness_load_context"}


def _profile_imports(profile: Path) -> str | None:
    """Import the profile in a child process (importing Locust here would monkey-patch this process)."""
    code = ("import sys; from pathlib import Path; from harness.load.profile import load_profile; "
            "load_profile(Path(sys.argv[1]))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(profile)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"load profile {profile} did not finish importing within 60 s"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else f"exit code {proc.returncode}").removeprefix("harness.errors.ConfigError: ")


def check_run_settings(config: Mapping[str, Any], where: str,
                       imported: dict[Path, str | None]) -> tuple[RunSettings, list[str]]:
    """The run settings and every problem of them (a value with a problem is its default in the settings);
    ``imported`` caches profile import checks per run."""
    from harness.load.profile import check_profile_file

    problems = [f"{where}: configuration {key!r} is not a harness setting (known: "
                f"{', '.join(sorted(k for k in KNOWN_KEYS if k.startswith('harness_')))})"
                for key in config if str(key).startswith("harness_") and key not in KNOWN_KEYS]
    settings, found = RunSettings.parse(config)
    problems += [f"{where}: configuration {line}" for line in found]
    if settings.load_enabled:
        profile = settings.profile
        try:
            check_profile_file(profile)
        except ConfigError as exc:
            return settings, [*problems, f"{where}: harness_profile: {exc}"]
        key = profile.absolute()
        if key not in imported:
            imported[key] = _profile_imports(profile)
        if imported[key]:
            problems.append(f"{where}: harness_profile: {imported[key]}")
    return settings, problems
