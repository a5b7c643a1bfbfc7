"""``rekey bus``: the key set and server configuration of a deployment's bus."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from rekey.stack.busdeploy import (
    DEFAULT_HOSTS,
    SECRETS_MOUNT,
    ClusterNode,
    container_files,
    default_cluster,
    init_deployment,
    nats_files,
)
from shared.bus.identities import IDENTITIES

bus = typer.Typer(help="The bus: NKEYs, TLS and the nats-server configuration.", no_args_is_help=True)


@bus.command("init")
def init(
    folder: Annotated[Path, typer.Argument(help="Folder for the keys and configuration (made 0700)")],
    host: Annotated[list[str] | None, typer.Option(
        help="Host name or address clients reach NATS at, for the server certificate; repeat it "
             f"(default: {', '.join(DEFAULT_HOSTS)})")] = None,
    cluster: Annotated[int, typer.Option(
        help="Render a JetStream cluster of this many nodes, nats-1 ... (0: one server)")] = 0,
    node: Annotated[list[str] | None, typer.Option(
        help="A cluster node as NAME=HOST[:CLIENT:ROUTE:MONITOR]; repeat it (instead of --cluster)")] = None,
    mount: Annotated[str, typer.Option(
        help="Where the NATS server sees this folder ('': here)")] = str(SECRETS_MOUNT),
    listen: Annotated[str, typer.Option(help="HOST:PORT one server listens on")] = "0.0.0.0:4222",
    monitor: Annotated[str, typer.Option(
        help="HOST:PORT of one server's monitoring (/healthz, /varz); '' for none")] = "0.0.0.0:8222",
    store_dir: Annotated[str, typer.Option(help="JetStream's folder inside the NATS server")] = "/data",
    template: Annotated[Path | None, typer.Option(
        help="Cluster template (default: deploy/nats/jetstream-cluster.conf)")] = None,
    rotate: Annotated[list[str] | None, typer.Option(
        help="Give this identity a new seed; the old one is admitted beside it until --retire")] = None,
    retire: Annotated[list[str] | None, typer.Option(
        help="Stop admitting (and trusting as a signer) the seed a rotation replaced")] = None,
) -> None:
    """Make a deployment's bus keys (kept if they exist) and render the nats-server configuration."""
    for name in [*(rotate or []), *(retire or [])]:
        if name not in IDENTITIES:
            raise typer.BadParameter(f"no identity {name!r}; known: {', '.join(IDENTITIES)}")
    try:
        nodes = [ClusterNode.parse(spec) for spec in node or []] or default_cluster(cluster)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--node") from None
    try:
        report = init_deployment(
            folder, host or DEFAULT_HOSTS, nodes=nodes,
            files_at=PurePosixPath(mount) if mount else None,
            store_dir=PurePosixPath(store_dir), template=template,
            listen=_host_port(listen, "--listen"),
            monitor=_host_port(monitor, "--monitor") if monitor else None,
            rotate=rotate or (), retire=retire or (),
        )
    except (FileNotFoundError, FileExistsError) as exc:
        typer.echo(f"rekey bus init: {exc}", err=True)
        raise typer.Exit(2) from None
    where = report.folder.resolve()
    typer.echo(f"Bus keys in {where} (folder 0700, secrets 0600):")
    typer.echo(f"  made: {', '.join(report.made) or 'nothing (all keys existed)'}")
    if report.kept:
        typer.echo(f"  kept: {', '.join(report.kept)}")
    typer.echo(f"  configuration: {', '.join(report.configs)}")
    for name, key in report.retired.items():
        typer.echo(f"  retired: {name}'s previous key {key[:12]}... is no longer admitted")
    for name, key in report.rotated.items():
        typer.echo(f"  rotated: {name} has a new key {key[:12]}...; the previous one is admitted "
                   f"(and trusted as a signer) until --retire {name}")
    if report.rotated or report.retired:
        typer.echo("  Reload NATS (SIGHUP) so it reads the configuration, then restart the "
                   "containers that mount what changed (deploy/README.md, rotation).")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo("\nWhat each container mounts (nothing else; ca-key.pem stays with the operator):")
    typer.echo(f"  nats: {', '.join(nats_files(nodes))}")
    for name in IDENTITIES:
        typer.echo(f"  {name}: {', '.join(container_files(name))}")
    typer.echo("with REKEY_NATS_KEYS_DIR set to the folder they are mounted in and "
               "REKEY_NATS_CA_FILE to its ca.pem.")


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter(f"not HOST:PORT: {value!r}", param_hint=option)
    return host, int(port)
