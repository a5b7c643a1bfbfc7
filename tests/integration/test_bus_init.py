"""`rekey bus init` makes a deployment's bus: keys kept, private modes, a config a real
nats-server starts with, admitting each identity over TLS and refusing a client without a key."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from typer.testing import CliRunner

from rekey.cli.app import app
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.ports import free_port
from shared.bus.connection import BusRefused, connect
from shared.bus.identities import IDENTITIES
from shared.bus.signing import ForgedEvent, NkeySigner, SignatureCheck
from shared.contracts.envelope import STREAM_NAME
from shared.settings import SERVICES, Settings


@dataclass
class Deployment:
    folder: Path
    args: list[str]  # `rekey bus init` for a server of its own on loopback
    server: EmbeddedNats
    settings: Settings


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A nats-server running the configuration `rekey bus init` rendered, on a free port."""
    folder, port = tmp_path / "bus", free_port()
    args = [str(folder), "--mount", "", "--listen", f"127.0.0.1:{port}", "--store-dir",
            str(tmp_path / "js"), "--monitor", f"127.0.0.1:{free_port()}"]  # never a fixed port
    bus_init(*args)
    server = EmbeddedNats(port=port, store_dir=tmp_path / "nats",
                          config_file=folder / "nats-server.conf")
    settings = Settings(nats_url=server.url, nats_keys_dir=str(folder),
                        nats_ca_file=str(folder / "ca.pem"))
    server.start()
    try:
        yield Deployment(folder, args, server, settings)
    finally:
        server.stop()


def bus_init(*args: str) -> str:
    result = CliRunner().invoke(app, ["bus", "init", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_bus_init_makes_every_key_private_and_keeps_them_on_a_second_run(tmp_path: Path) -> None:
    folder = tmp_path / "bus"
    output = bus_init(str(folder), "--host", "nats")
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in IDENTITIES:
        assert (folder / f"{name}.nk").stat().st_mode & 0o777 == 0o600
        assert f"  {name}: {name}.nk" in output  # each container: its own seed first
    for secret in ("ca-key.pem", "nats-server-key.pem", "nats-server.conf"):
        assert (folder / secret).stat().st_mode & 0o777 == 0o600
    for service in SERVICES:
        assert (folder / f"{service}.pub").read_text().startswith("U")
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.suffix != ".conf"}

    again = bus_init(str(folder), "--host", "nats")

    assert "made: nothing" in again
    assert {path.name: path.read_bytes() for path in folder.iterdir()
            if path.suffix != ".conf"} == before


def test_bus_init_warns_when_the_kept_certificate_does_not_name_a_new_host(tmp_path: Path) -> None:
    bus_init(str(tmp_path), "--host", "nats")
    result = CliRunner().invoke(app, ["bus", "init", str(tmp_path), "--host", "nats.example"])
    assert result.exit_code == 0
    assert "does not name nats.example" in result.output


def test_bus_init_serves_monitoring_where_the_operator_says_or_nowhere(tmp_path: Path) -> None:
    import json

    def http(*args: str) -> str | None:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        bus_init(str(folder), "--mount", "", *args)
        return json.loads((folder / "nats-server.conf").read_text()).get("http")

    assert http() == "0.0.0.0:8222"
    assert http("--monitor", "127.0.0.1:18222") == "127.0.0.1:18222"
    assert http("--monitor", "") is None
    refused = CliRunner().invoke(app, ["bus", "init", str(tmp_path / "x"), "--monitor", "8222"])
    assert refused.exit_code == 2 and "not HOST:PORT" in refused.output


async def test_a_deployment_config_admits_an_identity_over_tls_and_refuses_a_client_without_a_key(
    deployment: Deployment,
) -> None:
    settings = deployment.settings
    assert settings.nats_url.startswith("tls://")
    service = await connect(settings, "ticketing", attempts=3)
    try:
        js = service.jetstream()
        await js.add_stream(name=STREAM_NAME, subjects=["rekey.events.>"])
        ack = await js.publish("rekey.events.ticketing.Probe", b"{}")
        assert ack.stream == STREAM_NAME
    finally:
        await service.close()
    with pytest.raises(BusRefused):
        await connect(settings.model_copy(update={"nats_keys_dir": ""}), "portal", attempts=1)
    context = ssl.create_default_context(cafile=settings.nats_ca_file)
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        await nats.connect(settings.nats_url, tls=context, allow_reconnect=False, connect_timeout=2)


async def _connects(settings: Settings, identity: str, seed_file: Path) -> bool | None:
    """Admitted (True), refused (False), or not known yet (None: the server dropped the
    connection while it reloads its configuration)."""
    folder = seed_file.parent / f"as-{seed_file.stem}"
    folder.mkdir(exist_ok=True)
    (folder / f"{identity}.nk").write_bytes(seed_file.read_bytes())
    try:
        nc = await connect(settings.model_copy(update={"nats_keys_dir": str(folder)}), identity,
                           attempts=1)
    except BusRefused:
        return False
    except ConnectionError:
        return None
    await nc.close()
    return True


async def _reloaded(server: EmbeddedNats, settings: Settings, identity: str, seed: Path,
                    admitted: bool) -> None:
    """Reload and wait (bounded) until the server applies it."""
    server.reload()
    for _ in range(40):
        if await _connects(settings, identity, seed) == admitted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{seed.name} still {'refused' if admitted else 'admitted'} after reload")


async def test_a_rotated_key_is_admitted_beside_the_old_one_until_the_old_is_retired(
    deployment: Deployment, tmp_path: Path,
) -> None:
    folder, args, server, settings = (deployment.folder, deployment.args, deployment.server,
                                      deployment.settings)
    old = tmp_path / "old-portal.nk"
    old.write_bytes((folder / "portal.nk").read_bytes())
    running = await connect(settings, "portal", attempts=3)  # a portal that keeps running

    assert "rotated: portal" in bus_init(*args, "--rotate", "portal")
    new = folder / "portal.nk"
    await _reloaded(server, settings, "portal", new, admitted=True)
    assert await _connects(settings, "portal", old)
    await running.flush(timeout=2)
    assert running.is_connected
    await running.close()

    assert "retired: portal" in bus_init(*args, "--retire", "portal")
    await _reloaded(server, settings, "portal", old, admitted=False)
    assert await _connects(settings, "portal", new)


def test_a_rotated_service_key_signs_and_both_keys_are_trusted_until_the_old_is_retired(
    tmp_path: Path,
) -> None:
    bus_init(str(tmp_path))
    old = NkeySigner.from_seed((tmp_path / "credentials.nk").read_bytes().strip())
    bus_init(str(tmp_path), "--rotate", "credentials")
    new = NkeySigner.from_seed((tmp_path / "credentials.nk").read_bytes().strip())
    subject, data = "rekey.events.credentials.PasswordIssued", b"{}"

    during = SignatureCheck.from_folder(tmp_path)
    for signer in (old, new):
        during.check("credentials", subject, data, signer.headers(subject, data))

    bus_init(str(tmp_path), "--retire", "credentials")
    after = SignatureCheck.from_folder(tmp_path)
    after.check("credentials", subject, data, new.headers(subject, data))
    with pytest.raises(ForgedEvent):
        after.check("credentials", subject, data, old.headers(subject, data))


async def test_a_new_ca_and_certificate_replace_the_old_while_clients_trusting_both_connect(
    deployment: Deployment, tmp_path: Path,
) -> None:
    folder, server, settings = deployment.folder, deployment.server, deployment.settings
    bus_init(str(tmp_path / "next"), "--host", "127.0.0.1")  # the new CA and certificate
    old_ca = tmp_path / "old-ca.pem"
    old_ca.write_bytes((folder / "ca.pem").read_bytes())
    # 1. Clients trust both CAs.
    (folder / "ca.pem").write_bytes(old_ca.read_bytes() + (tmp_path / "next" / "ca.pem").read_bytes())
    await (await connect(settings, "operator", attempts=2)).close()
    # 2. The server shows the new certificate.
    for name in ("ca-key.pem", "nats-server.pem", "nats-server-key.pem"):
        (folder / name).write_bytes((tmp_path / "next" / name).read_bytes())
    server.reload()
    only_old = settings.model_copy(update={"nats_ca_file": str(old_ca)})
    for _ in range(40):
        try:
            await (await connect(only_old, "operator", attempts=1)).close()
        except ConnectionError:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the server still shows the old certificate")
    await (await connect(settings, "operator", attempts=2)).close()
    # 3. The old CA is dropped from what clients trust.
    (folder / "ca.pem").write_bytes((tmp_path / "next" / "ca.pem").read_bytes())
    await (await connect(settings, "operator", attempts=2)).close()
