"""The compose file is valid and stays truthful to the settings the code reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from shared.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_file_passes_the_compose_spec_schema():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_and_the_portal_has_a_container_running_it():
    services = compose()["services"]
    for name in (*SERVICES, "portal"):
        assert services[name]["command"] == ["serve", name]


def test_every_rekey_variable_in_the_compose_file_is_a_setting():
    known = {f"REKEY_{field.upper()}" for field in Settings.model_fields}
    for name, service in compose()["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("REKEY_"):
                assert variable in known, f"{name}: {variable} is not read by any code"
