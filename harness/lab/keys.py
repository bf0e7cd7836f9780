"""Lab-only SSH keys, made once in the cache: a client key, one host key per node, known_hosts.

The client key has no passphrase on purpose: it opens nothing but these throwaway guests, whose
sshd only listens on loopback forwards. Host keys are pinned in known_hosts, so the SSH transport
keeps its default RejectPolicy for the lab too.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness.errors import HarnessError
from harness.lab.paths import LabPaths


def _keygen(path: Path, comment: str) -> None:
    if path.exists() and path.with_suffix(path.suffix + ".pub").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, Path(str(path) + ".pub")):
        p.unlink(missing_ok=True)
    proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise HarnessError(f"lab: ssh-keygen for {path} failed: {proc.stderr.strip()}")
    path.chmod(0o600)


def ensure_keys(paths: LabPaths, nodes: list[str]) -> None:
    paths.keys_dir.mkdir(parents=True, exist_ok=True)
    paths.keys_dir.chmod(0o700)
    _keygen(paths.client_key, "hvsock-matrix-lab")
    for node in nodes:
        _keygen(paths.host_key(node), f"hvsock-matrix-lab-{node}")


def write_known_hosts(paths: LabPaths, endpoints: dict[str, tuple[str, int]]) -> Path:
    """endpoints: node -> (host, port) as the SSH client names it (L2: as seen from L1)."""
    lines = []
    for node, (host, port) in endpoints.items():
        pub = Path(str(paths.host_key(node)) + ".pub").read_text().split()
        name = host if port == 22 else f"[{host}]:{port}"
        lines.append(f"{name} {pub[0]} {pub[1]}\n")
    tmp = paths.known_hosts.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(paths.known_hosts)
    return paths.known_hosts
