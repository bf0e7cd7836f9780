"""A kernel SPEC (`stable`, `backports`, `sid` or an exact Debian version) -> the packages to fetch.

`stable` is today's kernel, resolved by the machine's own apt exactly as before (no network when
the machine's lists are there). Every other SPEC goes through a private apt configuration under
the lab cache holding the machine's Debian sources plus `<codename>-backports` and `sid` on the
machine's own mirror. The version is the one of Debian's `linux-image-amd64` meta package, which
is also the version of the kernel packages it points at.

Newer Debian kernels split the image: `linux-image-X` then only depends on `linux-binary-X`
(vmlinuz), `linux-modules-X` and `linux-base-X` (config, modules.builtin, modules.order), all at
the same version; every such `linux-*-X (= version)` dependency is fetched with the image.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.lab import debian_sources
from harness.lab.apt_client import Apt, PrivateApt

META = "linux-image-amd64"
NAMED = ("stable", "backports", "sid")
VERSION_RE = re.compile(r"^(?:\d+:)?\d[0-9A-Za-z.+~-]*$")


@dataclass(frozen=True)
class ResolvedKernel:
    spec: str
    version: str  # Debian package version, e.g. 6.12.95-1~bpo12+1
    image: str  # linux-image-6.12.95+deb12-amd64
    packages: tuple[str, ...]  # what `apt-get download` fetches: name=version, image first
    apt: Apt

    @property
    def abi(self) -> str:
        return self.image[len("linux-image-"):]


def check_spec(spec: str) -> str:
    """One clear line for a SPEC that can never resolve (before anything is downloaded)."""
    if spec in NAMED or VERSION_RE.match(spec):
        return spec
    raise HarnessError(f"lab: kernel `{spec}`: expected stable, backports, sid or a Debian package "
                       f"version such as 6.12.95-1~bpo12+1")


def suite_matches(spec: str, suite: str, codename: str) -> bool:
    """Does a suite serve this SPEC? An exact version matches every suite (the version decides)."""
    if spec == "stable":
        return suite in (codename, f"{codename}-updates", f"{codename}-security")
    if spec == "backports":
        return suite == f"{codename}-backports"
    if spec == "sid":
        return suite in ("sid", "unstable")
    return True


def pick_version(spec: str, rows: list[tuple[str, str]], codename: str) -> str:
    """The newest version (apt lists newest first) a matching suite has, or the exact one asked."""
    for version, suite in rows:
        if suite_matches(spec, suite, codename) and (spec in NAMED or version == spec):
            return version
    known = ", ".join(f"{v} ({s})" for v, s in rows) or "none"
    raise HarnessError(f"lab: kernel `{spec}`: no {META} version matches (apt knows: {known})")


def image_package(meta_depends: list[str], spec: str) -> str:
    for dep in meta_depends:
        m = re.match(r"(linux-image-\d\S*-amd64)\b", dep)
        if m:
            return m.group(1)
    raise HarnessError(f"lab: kernel `{spec}`: {META} depends on no linux-image-*-amd64 package")


def companion_packages(image: str, version: str, image_depends: list[str]) -> list[str]:
    """linux-binary-X, linux-modules-X, linux-base-X ... pinned to the image's own version."""
    abi = image[len("linux-image-"):]
    out = []
    for dep in image_depends:
        m = re.match(rf"(linux-[a-z]+-{re.escape(abi)})\s*\(=\s*([^)\s]+)\)", dep)
        if m and m.group(2) == version and m.group(1) != image:
            out.append(m.group(1))
    return out


def private_apt(cache_dir: Path) -> PrivateApt:
    """The machine's Debian sources plus backports and sid on the same mirror."""
    name = debian_sources.codename()
    own = [s for s in debian_sources.machine_sources()
           if any(suite_matches("stable", suite, name) for suite in s.suites)]
    mirror = debian_sources.debian_mirror(own, name)
    return PrivateApt(cache_dir, own, extra=[(mirror, (f"{name}-backports", "sid"))])


def resolve(spec: str, apt_dir: Path, progress=print) -> ResolvedKernel:
    check_spec(spec)
    name = debian_sources.codename()
    apt = Apt() if spec == "stable" else private_apt(apt_dir).ensure_lists(progress)
    version = pick_version(spec, apt.madison(META), name)
    image = image_package(apt.depends(META, version), spec)
    companions = companion_packages(image, version, apt.depends(image, version))
    return ResolvedKernel(spec, version, image, tuple(f"{p}={version}" for p in [image, *companions]), apt)
