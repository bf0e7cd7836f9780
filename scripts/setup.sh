#!/usr/bin/env bash
# Installs what hvsock-matrix needs on a fresh Debian 12 machine (run as root): the Debian
# packages of the lab-in-a-box, the netns test lab, the Samba-backed SMB tests and the browser
# tests, then the package.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  qemu-system-x86 openssh-server openssh-client socat busybox-static cpio kmod xz-utils \
  iproute2 procps chromium fonts-dejavu-core ca-certificates zstd samba >/dev/null
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

# The hybrid vsock backend (`lab up --hybrid N`): rust-vmm's vhost-device-vsock, pinned, built once
# into a cache every lab reuses (harness/lab/backend.py reads the same paths). Needs cargo (rustup's,
# or Debian's) and a C toolchain for linking.
VDV_VERSION=0.3.0
TOOLS="${HVSOCK_MATRIX_TOOLS:-$HOME/.cache/hvsock-matrix/tools}"
VDV_ROOT="$TOOLS/vhost-device-vsock-$VDV_VERSION"
if [ -x "$VDV_ROOT/bin/vhost-device-vsock" ]; then
  echo "hvsock-matrix: vhost-device-vsock $VDV_VERSION cached in $VDV_ROOT"
else
  command -v cc >/dev/null || apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
  CARGO="$(command -v cargo || true)"
  [ -n "$CARGO" ] || { [ -x "$HOME/.cargo/bin/cargo" ] && CARGO="$HOME/.cargo/bin/cargo"; }
  if [ -z "$CARGO" ]; then
    apt-get install -y -qq --no-install-recommends cargo >/dev/null
    CARGO=cargo
  fi
  rm -rf "$VDV_ROOT.tmp"
  echo "hvsock-matrix: building vhost-device-vsock $VDV_VERSION (cargo install, ~2 min once)"
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hvsock-matrix/cargo-target}" \
    "$CARGO" install --quiet vhost-device-vsock --version "$VDV_VERSION" --locked --root "$VDV_ROOT.tmp"
  rm -rf "$VDV_ROOT" && mv "$VDV_ROOT.tmp" "$VDV_ROOT"
fi
echo "hvsock-matrix: setup done"
