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
echo "hvsock-matrix: setup done"
