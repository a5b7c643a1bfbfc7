"""The bus's key material: one NKEY per identity, a CA and the NATS server's TLS certificate.

``rekey up`` makes them on its first start in ``<data dir>/bus`` (folder 0700, files 0600) and
keeps them; ``rekey bus init DIR`` makes the same set for a deployment, whose containers then
mount only their own seed. An operator may replace the CA and certificate with their own PEM
files of the same names. The server's configuration (:meth:`BusKeys.server_config`) is
rendered from :mod:`shared.bus.identities`, the one table of who may do what.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.bus.identities import IDENTITIES, Identity, authorization_block
from shared.bus.signing import PUBLIC_SUFFIX
from shared.evidence_keys import HEADS_IDENTITY_SUFFIX, heads_seed_file
from shared.settings import SERVICES

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "nats-server.pem"
SERVER_KEY_FILE = "nats-server-key.pem"
ROUTE_CERT_FILE = "nats-route.pem"
ROUTE_KEY_FILE = "nats-route-key.pem"
SEED_SUFFIX = ".nk"
PREVIOUS_SUFFIX = ".previous.nk"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CERT_DAYS = 825


def new_seed() -> bytes:
    """A new NKEY user seed (``SU...``)."""
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)


def public_key(seed: bytes) -> str:
    return nkeys.from_seed(seed).public_key.decode()


def _write_private(path: Path, data: bytes) -> None:
    """Create with 0600 from the start: never a moment where the secret is world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)


@dataclass(frozen=True)
class BusKeys:
    folder: Path

    # --- where things are ------------------------------------------------------------------
    def seed_file(self, identity: str) -> Path:
        return self.folder / f"{identity}{SEED_SUFFIX}"

    def previous_seed_file(self, identity: str) -> Path:
        """The seed a rotation replaced, still accepted until :meth:`retire`."""
        return self.folder / f"{identity}{PREVIOUS_SUFFIX}"

    def public_file(self, identity: str) -> Path:
        return self.folder / f"{identity}{PUBLIC_SUFFIX}"

    @property
    def ca_file(self) -> Path:
        return self.folder / CA_FILE

    @property
    def server_cert(self) -> Path:
        return self.folder / SERVER_CERT_FILE

    @property
    def server_key(self) -> Path:
        return self.folder / SERVER_KEY_FILE

    @property
    def route_cert(self) -> Path:
        return self.folder / ROUTE_CERT_FILE

    @property
    def route_key(self) -> Path:
        return self.folder / ROUTE_KEY_FILE

    # --- making them -----------------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path, identities: Iterable[str] = IDENTITIES,
               hosts: Iterable[str] = DEFAULT_HOSTS) -> BusKeys:
        """Make whatever is missing (seeds, CA, server certificate); keep what exists."""
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        keys = cls(folder)
        for name in identities:
            if not keys.seed_file(name).exists():
                _write_private(keys.seed_file(name), new_seed())
            if not keys.public_file(name).exists():
                # Whom to trust as the signer of its events or principals (not secret).
                keys.public_file(name).write_text(public_key(keys.seed(name)) + "\n")
            if name in SERVICES:
                keys.ensure_heads_key(name)
        if not keys.ca_file.exists():
            keys._make_ca()
        if not keys.server_cert.exists():
            keys._make_cert(keys.server_cert, keys.server_key, list(hosts),
                            [ExtendedKeyUsageOID.SERVER_AUTH])
        return keys

    def ensure_route_cert(self, hosts: Iterable[str]) -> bool:
        """The certificate cluster nodes show each other (server and client: routes verify
        both ways); made once, kept like every other key. True when it was made now."""
        if self.route_cert.exists():
            return False
        self._make_cert(self.route_cert, self.route_key, list(hosts),
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        return True

    def hosts_not_covered(self, hosts: Iterable[str], cert: Path | None = None) -> list[str]:
        """Which of ``hosts`` the server (or given) certificate does not name: clients check
        the host name, so a missing one is a connection refused later."""
        loaded = x509.load_pem_x509_certificate((cert or self.server_cert).read_bytes())
        names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        covered = {str(n) for n in names.get_values_for_type(x509.DNSName)}
        covered |= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
        return [host for host in hosts if str(_general_name(host).value) not in covered]

    def ensure_heads_key(self, service: str) -> None:
        """The service's evidence seed (signs its tree heads, keys its row binding) and the
        public key auditors check heads with; never rotated (old heads must still verify)."""
        seed_file = heads_seed_file(self.folder, service)
        if not seed_file.exists():
            _write_private(seed_file, new_seed())
        public = self.folder / f"{service}{HEADS_IDENTITY_SUFFIX}{PUBLIC_SUFFIX}"
        if not public.exists():
            public.write_text(public_key(seed_file.read_bytes().strip()) + "\n")

    def add_identity(self, name: str) -> Path:
        """A seed for an identity outside the table (tests' inspector), and its public key
        (services check its requests' signatures with it); kept if present."""
        path = self.seed_file(name)
        if not path.exists():
            _write_private(path, new_seed())
        if not self.public_file(name).exists():
            self.public_file(name).write_text(public_key(self.seed(name)) + "\n")
        return path

    def seed(self, identity: str) -> bytes:
        return self.seed_file(identity).read_bytes().strip()

    def public_keys(self) -> dict[str, str]:
        return {name: public_key(self.seed(name)) for name in IDENTITIES
                if self.seed_file(name).exists()}

    def previous_keys(self) -> list[tuple[str, Identity]]:
        """(public key, identity) of every seed being rotated out: the server still admits it."""
        return [(public_key(self.previous_seed_file(name).read_bytes().strip()), ident)
                for name, ident in IDENTITIES.items() if self.previous_seed_file(name).exists()]

    # --- rotating them ---------------------------------------------------------------------
    def rotate(self, identity: str) -> str:
        """A new seed for ``identity``; the old one is kept and still admitted (and still trusted
        as the signer of its events or principals) until :meth:`retire`. Returns the new
        public key."""
        previous = self.previous_seed_file(identity)
        if previous.exists():
            raise FileExistsError(f"{identity} is being rotated already: retire {previous.name} first")
        old = self.seed(identity)
        _write_private(previous, old)
        new = new_seed()
        _write_private(self.seed_file(identity), new)
        self._write_signers(identity, [*self.signers(identity), public_key(new)])
        return public_key(new)

    def retire(self, identity: str) -> str | None:
        """Forget the seed a rotation replaced: no longer admitted, no longer a trusted signer.
        Returns its public key (None when nothing was being rotated)."""
        previous = self.previous_seed_file(identity)
        if not previous.exists():
            return None
        old = public_key(previous.read_bytes().strip())
        self._write_signers(identity, [key for key in self.signers(identity) if key != old])
        previous.unlink()
        return old

    def signers(self, service: str) -> list[str]:
        """The public keys consumers trust for ``service``'s events (``<service>.pub``)."""
        path = self.public_file(service)
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.strip() for line in lines if line.strip()]

    def _write_signers(self, service: str, keys: list[str]) -> None:
        # In place (same file), so a container that mounts it sees the change.
        with self.public_file(service).open("w") as out:
            out.write("".join(f"{key}\n" for key in dict.fromkeys(keys)))

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        # A name of its own, so that during a CA rotation the old and the new CA in one
        # ca.pem bundle are told apart (as their key identifiers also tell them apart).
        name = x509.Name([x509.NameAttribute(
            NameOID.COMMON_NAME, f"Rekey bus CA {now:%Y-%m-%d} {os.urandom(4).hex()}")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(self.folder / CA_KEY_FILE, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _write_private(self.ca_file, cert.public_bytes(serialization.Encoding.PEM))

    def _make_cert(self, cert_path: Path, key_path: Path, hosts: list[str],
                   usages: list[x509.ObjectIdentifier]) -> None:
        ca_key = serialization.load_pem_private_key((self.folder / CA_KEY_FILE).read_bytes(), None)
        # ca.pem may hold two CAs while one replaces the other: sign as the one of ca-key.pem.
        ca = next(cert for cert in x509.load_pem_x509_certificates(self.ca_file.read_bytes())
                  if cert.public_key() == ca_key.public_key())
        key = ec.generate_private_key(ec.SECP256R1())
        names = [_general_name(host) for host in hosts]
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        _write_private(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))

    # --- the server's configuration --------------------------------------------------------
    def server_config(self, host: str, port: int, store_dir: Path | PurePath,
                      extra: Iterable[tuple[str, Identity]] = (),
                      monitor_port: int | None = None,
                      files_at: PurePath | None = None) -> str:
        """nats-server's configuration: JetStream, TLS, and one NKEY user per identity.

        The format is nats-server's own, of which JSON is a subset, so every value is quoted by
        ``json.dumps`` and nothing from a file name can break out of its string. ``files_at`` is
        where the server sees this folder (a container's mount), if not where it is here.
        """
        return render_config(self.server_settings(host, port, store_dir, extra, monitor_port,
                                                  files_at))

    def server_settings(self, host: str, port: int, store_dir: Path | PurePath,
                        extra: Iterable[tuple[str, Identity]] = (),
                        monitor_port: int | None = None,
                        files_at: PurePath | None = None) -> dict[str, Any]:
        """:meth:`server_config` as a dictionary, for configurations that add to it."""
        config: dict[str, Any] = {
            "host": host,
            "port": port,
            "jetstream": {"store_dir": str(store_dir)},
            "tls": {
                "cert_file": self.seen_at(self.server_cert, files_at),
                "key_file": self.seen_at(self.server_key, files_at),
                "timeout": 2,
            },
            "authorization": authorization_block(
                self.public_keys(),
                [*self.previous_keys(),
                 *((public_key(self.seed(name)), ident) for name, ident in extra)],
            ),
            "max_payload": 1024 * 1024,
        }
        if monitor_port is not None:
            config["http"] = f"127.0.0.1:{monitor_port}"
        return config

    def seen_at(self, path: Path, files_at: PurePath | None) -> str:
        """A file of this folder as the server sees it: here, or under a container's mount."""
        return str(path if files_at is None else files_at / path.name)


def render_config(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
