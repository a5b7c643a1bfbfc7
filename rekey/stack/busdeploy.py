"""A deployment's bus: its key set, its nats-server configuration and who mounts which file.

``rekey bus init DIR`` calls :func:`init_deployment`. Keys are made once and never replaced
(the same :class:`BusKeys` ``rekey up`` uses); the configuration files are rendered again
each time from :mod:`shared.bus.identities`, so a change of permissions reaches the server
by running the command again. Each container then mounts only the files
:func:`container_files` names: its own seed, never another's.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from string import Template

from rekey.stack.buskeys import (
    CA_FILE,
    ROUTE_CERT_FILE,
    ROUTE_KEY_FILE,
    SEED_SUFFIX,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    BusKeys,
    _write_private,
    render_config,
)
from shared.bus.identities import IDENTITIES, authorization_block
from shared.bus.signing import PUBLIC_SUFFIX
from shared.evidence_keys import HEADS_IDENTITY_SUFFIX, heads_seed_file
from shared.settings import AUDIT, PROCESSES, SERVICES

DEFAULT_HOSTS = ("nats", "localhost", "127.0.0.1")
SECRETS_MOUNT = PurePosixPath("/run/secrets")  # where Docker Compose mounts secrets
SERVER_CONFIG = "nats-server.conf"
ROUTE_PASSWORD_FILE = "route-password"  # noqa: S105 (a file name)
ROUTE_USER = "rekey-route"
CLIENT_PORT, ROUTE_PORT, MONITOR_PORT = 4222, 6222, 8222
TEMPLATE_NAME = "jetstream-cluster.conf"


def container_files(identity: str) -> list[str]:
    """What the container of one identity mounts: its seed, the CA, and for a service every
    identity's public key (its consumers check events against the services' keys, its
    endpoints each request against its caller's: :mod:`shared.bus.callers`)."""
    public = [f"{name}{PUBLIC_SUFFIX}" for name in IDENTITIES] if identity in PROCESSES else []
    if identity in SERVICES:  # its evidence seed: signs its tree heads, binds its rows
        public.append(heads_seed_file(PurePosixPath(), identity).name)
    if identity in ("auditor", AUDIT):  # check every service's signed tree heads
        public += [f"{service}{HEADS_IDENTITY_SUFFIX}{PUBLIC_SUFFIX}" for service in SERVICES]
    return [f"{identity}{SEED_SUFFIX}", *public, CA_FILE]


def nats_files(nodes: Sequence[ClusterNode] = ()) -> list[str]:
    """What a nats-server container mounts (a cluster node: its own configuration)."""
    if not nodes:
        return [SERVER_CONFIG, SERVER_CERT_FILE, SERVER_KEY_FILE]
    return ["<node>.conf", SERVER_CERT_FILE, SERVER_KEY_FILE, ROUTE_CERT_FILE, ROUTE_KEY_FILE,
            CA_FILE]


@dataclass(frozen=True)
class ClusterNode:
    """One node of a JetStream cluster: its name, the host others reach it at, its ports."""

    name: str
    host: str
    client_port: int = CLIENT_PORT
    route_port: int = ROUTE_PORT
    monitor_port: int = MONITOR_PORT

    @classmethod
    def parse(cls, spec: str) -> ClusterNode:
        """``NAME=HOST[:CLIENT_PORT:ROUTE_PORT:MONITOR_PORT]``."""
        name, sep, address = spec.partition("=")
        parts = address.split(":")
        if not sep or not name or not parts[0] or len(parts) not in (1, 4):
            raise ValueError(f"not NAME=HOST[:CLIENT:ROUTE:MONITOR]: {spec!r}")
        ports = [int(p) for p in parts[1:]] or [CLIENT_PORT, ROUTE_PORT, MONITOR_PORT]
        return cls(name, parts[0], *ports)

    @property
    def listen_host(self) -> str:
        """A loopback node listens on loopback only; a named host on every interface."""
        try:
            return self.host if ipaddress.ip_address(self.host).is_loopback else "0.0.0.0"
        except ValueError:
            return "0.0.0.0"


def default_cluster(size: int) -> list[ClusterNode]:
    return [ClusterNode(f"nats-{n}", f"nats-{n}") for n in range(1, size + 1)]


@dataclass
class InitReport:
    folder: Path
    made: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rotated: dict[str, str] = field(default_factory=dict)  # identity -> its new public key
    retired: dict[str, str] = field(default_factory=dict)  # identity -> the key no longer admitted


def init_deployment(folder: Path, hosts: Iterable[str] = DEFAULT_HOSTS, *,
                    nodes: Sequence[ClusterNode] = (),
                    files_at: PurePath | None = SECRETS_MOUNT,
                    store_dir: PurePath = PurePosixPath("/data"),
                    template: Path | None = None,
                    listen: tuple[str, int] = ("0.0.0.0", CLIENT_PORT),
                    monitor: tuple[str, int] | None = ("0.0.0.0", MONITOR_PORT),
                    rotate: Iterable[str] = (), retire: Iterable[str] = ()) -> InitReport:
    """Make what is missing of a deployment's bus keys and render its server configuration.

    ``files_at`` is where the NATS server sees the folder (``None``: where it is here).
    With ``nodes``, one configuration per cluster node from the cluster template; without,
    ``nats-server.conf`` for a single server listening on ``listen``, with JetStream's
    ``sync_interval: always`` and monitoring on ``monitor``. ``rotate`` gives those
    identities new seeds, the old ones admitted beside them until a later run ``retire``s them.
    """
    hosts = list(dict.fromkeys([*hosts, *(node.host for node in nodes)]))
    before = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    keys = BusKeys.create(folder, hosts=hosts)
    report = InitReport(folder)
    for name in retire:
        old = keys.retire(name)
        if old:
            report.retired[name] = old
    for name in rotate:
        report.rotated[name] = keys.rotate(name)
    if nodes:
        keys.ensure_route_cert(hosts)
        report.configs = _write_cluster(keys, nodes, files_at, store_dir, template)
    else:
        config = keys.server_settings(*listen, store_dir, files_at=files_at)
        # fsync before every acknowledgement (why: deploy/nats/jetstream-cluster.conf)
        config["jetstream"]["sync_interval"] = "always"
        if monitor is not None:  # /healthz for the healthcheck, /varz ... for an exporter
            config["http"] = f"{monitor[0]}:{monitor[1]}"
        _write_private(folder / SERVER_CONFIG, render_config(config).encode())
        report.configs = [SERVER_CONFIG]
    after = sorted(p.name for p in folder.iterdir())
    report.made = [name for name in after if name not in before and name not in report.configs]
    report.kept = [name for name in after if name in before and name not in report.configs]
    missing = keys.hosts_not_covered(hosts)
    if missing:
        report.warnings.append(
            f"{SERVER_CERT_FILE} was made earlier and does not name {', '.join(missing)}: clients "
            f"check the host name, so delete {SERVER_CERT_FILE} and {SERVER_KEY_FILE} and run "
            "this again to make one that does")
    return report


def default_template() -> Path:
    """deploy/nats/jetstream-cluster.conf of the checkout Rekey runs from, or of the current
    folder (the image has no deploy/: pass ``--template`` there)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = root / "deploy" / "nats" / TEMPLATE_NAME
        if path.exists():
            return path
    raise FileNotFoundError(f"cannot find deploy/nats/{TEMPLATE_NAME}: pass --template")


def cluster_config(keys: BusKeys, node: ClusterNode, nodes: Sequence[ClusterNode],
                   files_at: PurePath | None, store_dir: PurePath, template: str,
                   route_password: str) -> str:
    """One node's configuration: the template with this deployment's values, each quoted."""
    def at(name: str) -> str:
        return keys.seen_at(keys.folder / name, files_at)

    routes = [f"nats-route://{ROUTE_USER}:{route_password}@{other.host}:{other.route_port}"
              for other in nodes]
    values = {
        "server_name": node.name,
        "client_listen": f"{node.listen_host}:{node.client_port}",
        "monitor_listen": f"{node.listen_host}:{node.monitor_port}",
        "route_listen": f"{node.listen_host}:{node.route_port}",
        "store_dir": str(store_dir / node.name),
        "server_cert": at(SERVER_CERT_FILE), "server_key": at(SERVER_KEY_FILE),
        "route_cert": at(ROUTE_CERT_FILE), "route_key": at(ROUTE_KEY_FILE), "ca_file": at(CA_FILE),
        "route_user": ROUTE_USER, "route_password": route_password,
        "routes": routes,
        "authorization": authorization_block(keys.public_keys(), keys.previous_keys()),
    }
    quoted = {name: json.dumps(value, indent=2) for name, value in values.items()}
    return Template(template).substitute(quoted)


def _write_cluster(keys: BusKeys, nodes: Sequence[ClusterNode], files_at: PurePath | None,
                   store_dir: PurePath, template: Path | None) -> list[str]:
    password_file = keys.folder / ROUTE_PASSWORD_FILE
    if not password_file.exists():
        _write_private(password_file, secrets.token_urlsafe(32).encode())
    password = password_file.read_text().strip()
    text = (template or default_template()).read_text()
    written = []
    for node in nodes:
        name = f"{node.name}.conf"
        config = cluster_config(keys, node, nodes, files_at, store_dir, text, password)
        _write_private(keys.folder / name, config.encode())  # holds the route password
        written.append(name)
    return written

