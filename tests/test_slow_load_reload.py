"""Slow model load with the reload trigger, judged by Triton's own log against the load before it.

The hard case is a machine (or model) on which a plain reload already takes longer than the delay asked for:
the reload call's duration then says "at least delay_s" although the delay never took effect. Planted here
with a model whose load time is pinned (the env override wins over the config parameter) at 4 s, asked for a
3 s delay: before the fix it landed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.chaos import actions
from harness.deployment import DEFAULT_MANIFEST
from harness.errors import FaultError
from harness.platforms.local.platform import LocalPlatform


def _manifest(tmp_path: Path, pinned_delay: str) -> Path:
    docs = list(yaml.safe_load_all(DEFAULT_MANIFEST.read_text()))
    for env in docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]:
        if env["name"] == "HARNESS_MODEL_LOAD_DELAY_S":
            env["value"] = pinned_delay
    path = tmp_path / f"pinned-{pinned_delay or 'none'}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def _config(platform: LocalPlatform, tmp_path: Path, run: str) -> dict[str, object]:
    return {"harness_state_dir": str(platform.state), "harness_run_id": run, "harness_run_dir": str(tmp_path / run)}


def test_a_reload_lands_only_when_triton_loaded_slowly_beyond_the_load_before(make_platform,  # type: ignore[no-untyped-def]
                                                                              tmp_path: Path) -> None:
    # The delay takes effect: the reload's load (Triton's log) is the delay longer than the load before it.
    plain = make_platform(replicas=1, manifest=_manifest(tmp_path, ""))
    plain.up()
    landed = actions.slow_model_load(names=["triton-0"], delay_s=3, trigger="reload",
                                     configuration=_config(plain, tmp_path, "lands"))
    assert "Triton:" in landed["landing"], landed
    plain.down()

    # A model that takes 4 s to load whatever it is asked: the call takes >= 3 s, Triton's load is no longer
    # than the load before it, so the delay did not take effect and the fault did not land.
    slow = make_platform(replicas=1, manifest=_manifest(tmp_path, "4"))
    slow.up()
    with pytest.raises(FaultError, match="the delay parameter did not take effect") as missed:
        actions.slow_model_load(names=["triton-0"], delay_s=3, trigger="reload",
                                configuration=_config(slow, tmp_path, "misses"))
    assert "Triton loaded it in" in str(missed.value), missed.value
