"""``rekey deploy``: what a deployment needs besides the bus keys (``rekey bus init``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

deploy = typer.Typer(help="Deployment files: secrets for Compose, Kubernetes manifests.",
                     no_args_is_help=True)


@deploy.command("secrets")
def secrets_command(
    folder: Annotated[Path, typer.Argument(help="Where to make them (beside docker-compose.yml: ./secrets)")],
) -> None:
    """Make the missing key and password files (one per secret setting; existing ones are kept)."""
    from rekey.deploy.secrets import SECRET_FILES, make_secrets, ownership_commands

    made, _kept = make_secrets(folder)
    for secret in SECRET_FILES:
        state = "made" if secret.name in made else "kept"
        note = " (empty: put in your provider's)" if secret.make == "empty" and state == "made" else ""
        typer.echo(f"{state:>4}  {folder / secret.name}  -> {secret.setting}{note}")
    typer.echo("Give each container's user its files (Compose mounts them as they are):")
    for line in ownership_commands(str(folder)):
        typer.echo(f"  {line}")


@deploy.command("kubernetes")
def kubernetes_command(
    write: Annotated[bool, typer.Option(help="Write deploy/kubernetes/ instead of listing it")] = False,
) -> None:
    """The kustomize base in deploy/kubernetes/, generated from the bus policy and the secrets
    each process reads (a test keeps the committed files current)."""
    from rekey.deploy.kubernetes import render
    from rekey.deploy.kubernetes import write as write_files

    if not write:
        for name, text in render().items():
            typer.echo(f"--- {name}\n{text}", nl=False)
        return
    changed = write_files()
    typer.echo(f"deploy/kubernetes: {', '.join(changed)} updated." if changed else
               "deploy/kubernetes is current.")
