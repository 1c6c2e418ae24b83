"""The sandbox's certificates and tokens, made with the ``openssl`` command (no Python crypto dependency).

kube-apiserver 1.20 serves TLS only, so the sandbox needs a CA, a serving certificate whose names cover
every address the API is reached at, a client certificate for the API server's calls to the kubelet
(``exec``), and a key pair that signs service-account tokens. Components and users authenticate with
static bearer tokens: simpler than one certificate each, and RBAC sees the same users and groups.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EnvironmentProblem

__all__ = ["USERS", "Credentials", "make_credentials"]

#: user -> groups. ``system:node:<node>`` in ``system:nodes`` is what the Node authorizer expects of a
#: kubelet; the others are the identities the default RBAC roles are bound to.
USERS = {
    "admin": ("system:masters",),
    "system:kube-controller-manager": (),
    "system:kube-scheduler": (),
    "system:kube-proxy": (),
}


@dataclass(frozen=True)
class Credentials:
    directory: Path
    tokens: dict[str, str]  # user -> bearer token

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def path(self, name: str) -> Path:
        return self.directory / name


def _openssl(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EnvironmentProblem(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def _ec_key(path: str, cwd: Path) -> None:
    _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path], cwd)


def _signed(cwd: Path, name: str, subject: str, ext: str) -> None:
    """A key and a certificate signed by the sandbox CA, with the extensions in ``ext``."""
    _ec_key(f"{name}.key", cwd)
    _openssl(["req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr"], cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(
        ["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "30", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt"],
        cwd,
    )


def make_credentials(directory: Path, node: str, addresses: list[str], dns_names: list[str]) -> Credentials:
    """Everything the control plane and its clients need, written into ``directory`` (mode 0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _ec_key("ca.key", directory)
    _openssl(["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=triton-harness-sandbox-ca", "-days", "30",
              "-sha256", "-out", "ca.crt"], directory)
    sans = ",".join([*(f"IP:{a}" for a in addresses), *(f"DNS:{d}" for d in dns_names)])
    _signed(directory, "apiserver", "/CN=kube-apiserver",
            f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")
    # O=system:masters: the API server may exec and read logs on the kubelet (kubeadm does the same).
    _signed(directory, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n")
    _openssl(["genrsa", "-out", "sa.key", "2048"], directory)
    _openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], directory)
    users = {**USERS, f"system:node:{node}": ("system:nodes",)}
    tokens = {user: secrets.token_hex(16) for user in users}
    lines = [f'{tokens[u]},{u},{u},"{",".join(groups)}"' for u, groups in users.items()]
    (directory / "tokens.csv").write_text("\n".join(lines) + "\n")
    for leftover in directory.glob("*.csr"):
        leftover.unlink()
    return Credentials(directory, tokens)
