"""docker-compose.yml starts the real processes: each container's command line, environment and
secrets, translated to this machine (no Docker engine here), become ready by the container's
own healthcheck.

The translation is only where things are: /run/secrets becomes a folder per container holding
exactly the secrets that container lists, /data a folder of its own, container host names
127.0.0.1, container ports free ports, the database a fresh one whose roles the compose init
script makes (with a prefix, so tests never share roles). PostgreSQL is the local server and the
proxy is Caddy, which is not here: the proxy is checked against the portal's address only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from ruamel.yaml import YAML

from rekey.deploy.secrets import make_secrets
from rekey.stack.busdeploy import init_deployment
from rekey.stack.natsd import nats_server_binary
from rekey.stack.ports import free_port
from shared.settings import PROCESSES
from shared.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ENV = {"REKEY_DATA_DIR": "/data"}  # the Dockerfile's ENV
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, dotenv: dict[str, str]) -> Any:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default} and ${NAME:?message}."""
    if isinstance(value, dict):
        return {k: interpolate(v, dotenv) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, dotenv) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = dotenv.get(name)
        if op == ":?" and not current:
            raise AssertionError(f"compose needs {name}: {arg}")
        if (op == ":-" and not current) or (op == "-" and current is None):
            return arg
        return current or ""

    return VARIABLE.sub(one, value)


def compose(dotenv: dict[str, str]) -> dict[str, Any]:
    return interpolate(YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text()), dotenv)


@dataclass
class Here:
    """Where each container's things are on this machine."""

    root: Path
    database: str
    role_prefix: str
    ports: dict[tuple[str, int], int] = field(default_factory=dict)  # (container, port) -> here

    def port(self, container: str, port: int) -> int:
        return self.ports.setdefault((container, port), free_port())

    def secrets(self, container: str) -> Path:
        return self.root / container / "run-secrets"

    def data(self, container: str) -> Path:
        return self.root / container / "data"

    def value(self, container: str, name: str, value: str) -> str:
        """One environment value or argument as this machine needs it."""
        value = value.replace("/run/secrets", str(self.secrets(container)))
        if value == "/data" or value.startswith("/data/"):
            value = str(self.data(container)) + value[len("/data"):]
        for (host, port), local in list(self.ports.items()):
            value = value.replace(f"{host}:{port}", f"127.0.0.1:{local}")
        if name.endswith("_HOST") and value in ("0.0.0.0", "postgres", "mailsink", "nats"):
            return "127.0.0.1"
        if name == "REKEY_POSTGRES_DB":
            return self.database
        if name == "REKEY_POSTGRES_USER":
            return self.role_prefix + value
        if name == "REKEY_SMTP_PORT":
            return str(self.port("mailsink", int(value)))
        if name.endswith("_PORT") and value.isdigit() and name != "REKEY_POSTGRES_PORT":
            return str(self.port(container, int(value)))
        return value

    def arguments(self, container: str, args: list[str]) -> list[str]:
        out = []
        for previous, arg in zip(["", *args], args, strict=False):
            if previous == "--host" and arg == "0.0.0.0":
                arg = "127.0.0.1"
            elif previous == "--port" and arg.isdigit():
                arg = str(self.port(container, int(arg)))
            out.append(self.value(container, "", arg))
        return out

    def environment(self, container: str, service: dict[str, Any]) -> dict[str, str]:
        declared = {**IMAGE_ENV, **{k: str(v) for k, v in (service.get("environment") or {}).items()}}
        base = {k: v for k, v in os.environ.items() if not k.startswith("REKEY_")}
        return {**base, **{k: self.value(container, k, v) for k, v in declared.items()}}


def mount_secrets(here: Here, container: str, service: dict, files: dict[str, Path]) -> None:
    """The container's /run/secrets: the files it lists, and nothing else."""
    folder = here.secrets(container)
    folder.mkdir(parents=True, mode=0o700)
    here.data(container).mkdir(parents=True, mode=0o700)
    for name in service.get("secrets", []):
        shutil.copy2(files[name], folder / name)


def rekey_command(service: dict[str, Any]) -> list[str]:
    """The image's entrypoint (`rekey`, or the service's own) and command, run here."""
    entrypoint = service.get("entrypoint") or ["rekey"]
    if entrypoint[0] == "rekey":
        entrypoint = [sys.executable, "-m", "rekey", *entrypoint[1:]]
    elif entrypoint[0] == "python":
        entrypoint = [sys.executable, *entrypoint[1:]]
    return [*entrypoint, *service.get("command", [])]


def healthcheck(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return rekey_command({"entrypoint": test[1:2], "command": test[2:]}) if test[1] in (
        "rekey", "python") else test[1:]


@dataclass
class Running:
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.logs[name] = log
        with log.open("wb") as out:
            self.processes[name] = subprocess.Popen(command, env=env, stdout=out,
                                                    stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def running() -> Iterator[Running]:
    processes = Running()
    try:
        yield processes
    finally:
        processes.stop()


async def ready(running: Running, name: str, check: list[str], env: dict[str, str]) -> None:
    def passes() -> bool:
        assert running.processes[name].poll() is None, (
            f"{name} exited:\n{running.logs[name].read_text()[-3000:]}")
        return subprocess.run(check, env=env, capture_output=True, timeout=30,
                              check=False).returncode == 0

    await eventually(passes, what=f"{name}'s healthcheck to pass", timeout=120, interval=0.5)


def http_check(here: Here, container: str, command: list[str]) -> list[str]:
    """wget -q -O /dev/null URL, as Python here (the image's wget is not on this machine)."""
    assert command[:4] == ["wget", "-q", "-O", "/dev/null"], command
    url = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{here.port(container, int(m[1]))}",
                 command[4])
    return [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)"]


@pytest.fixture
def roles(postgres_db: str) -> Iterator[str]:
    """The prefix of this test's database roles; they go before the database does."""
    prefix = f"{postgres_db}_"
    yield prefix
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={postgres_db}",
                         autocommit=True) as conn:
        for service in PROCESSES:
            role = sql.Identifier(prefix + service)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (prefix + service,))
            if exists.fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(role))
                conn.execute(sql.SQL("DROP ROLE {}").format(role))


async def test_every_container_of_the_compose_file_starts_the_real_process_and_turns_healthy(
    tmp_path: Path, postgres_db: str, roles: str, running: Running,
):
    prefix = roles
    here = Here(tmp_path, postgres_db, prefix)
    # The operator's steps: the bus and the other secrets, and a token for the Twilio sim.
    init_deployment(tmp_path / "bus")
    make_secrets(tmp_path / "secrets")
    (tmp_path / "secrets" / "twilio-auth-token").write_text("a-token-for-the-sim\n")
    dotenv = {"REKEY_TWILIO_API_URL": "http://twilio-sim:8089"}  # the profile's documented line
    spec = compose(dotenv)
    files = {name: tmp_path / Path(secret["file"]).relative_to(".")
             for name, secret in spec["secrets"].items()}
    containers = spec["services"]

    # nats: its command with the configuration `rekey bus init` rendered, moved here.
    nats = containers["nats"]
    mount_secrets(here, "nats", nats, files)
    config_path = here.secrets("nats") / "nats-server.conf"
    config = json.loads(config_path.read_text())
    assert config["jetstream"]["sync_interval"] == "always"
    config["host"], config["port"] = "127.0.0.1", here.port("nats", config["port"])
    monitor = int(config["http"].rsplit(":", 1)[1])
    config["http"] = f"127.0.0.1:{here.port('nats', monitor)}"
    config["jetstream"]["store_dir"] = here.value("nats", "", config["jetstream"]["store_dir"])
    config["tls"] = {k: here.value("nats", "", v) if isinstance(v, str) else v
                     for k, v in config["tls"].items()}
    config_path.write_text(json.dumps(config))
    command = [str(nats_server_binary()), *here.arguments("nats", nats["command"])]
    running.start("nats", command, {}, tmp_path / "nats.log")
    check = http_check(here, "nats", nats["healthcheck"]["test"][1:])
    await ready(running, "nats", check, dict(os.environ))

    # postgres: the local server stands in; the compose init script makes the roles.
    postgres = containers["postgres"]
    mount_secrets(here, "postgres", postgres, files)
    init = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = ROOT / init.split(":")[0]
    env = {**os.environ, **{k: str(v) for k, v in postgres["environment"].items()},
           "POSTGRES_DB": postgres_db, "PGHOST": "127.0.0.1",
           "INIT_ROLES_SECRETS_DIR": str(here.secrets("postgres")), "INIT_ROLES_PREFIX": prefix}
    made = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                          check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    for service in PROCESSES:
        assert f"role {prefix}{service} owns schema {service}" in made.stdout

    # Every other long-running container: its command, its environment, its healthcheck.
    order = ["mailsink", "twilio-sim", *PROCESSES, "portal"]
    assert set(order) | {"nats", "postgres", "proxy", "cli", "auditor"} == set(containers)
    for name in order:
        service = containers[name]
        mount_secrets(here, name, service, files)
        env = here.environment(name, service)
        running.start(name, here.arguments(name, rekey_command(service)), env,
                      tmp_path / f"{name}.log")
        await ready(running, name, here.arguments(name, healthcheck(service)), env)

    # Each service connected as its own role, which reads its schema and no other.
    with psycopg.connect(f"host=127.0.0.1 user={prefix}ticketing dbname={postgres_db}") as conn:
        owned = conn.execute("SELECT count(*) FROM information_schema.tables "
                             "WHERE table_schema = 'ticketing'").fetchone()
        assert owned and owned[0] > 0
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'credentials'")
        other = tables.fetchone()
        assert other is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT * FROM credentials.{}").format(sql.Identifier(other[0])))


def test_the_proxy_reaches_the_portal_where_the_portal_listens():
    spec = compose({})
    portal, proxy = spec["services"]["portal"], spec["services"]["proxy"]
    caddyfile = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
    target = re.search(r"reverse_proxy\s+(\S+)", caddyfile)
    assert target and target[1] == f"portal:{portal['environment']['REKEY_PORTAL_PORT']}"
    assert set(proxy["networks"]) == {"edge"}  # the proxy reaches the portal and nothing else
    assert "edge" in portal["networks"]
    assert any(v.startswith("./deploy/caddy/Caddyfile:") for v in proxy["volumes"])
