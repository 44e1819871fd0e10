#!/bin/bash
# Install every Debian package that building, testing and benchmarking sbx needs.
# Idempotent: run it again at any time. Needs root (or sudo). Debian 12 (bookworm).
#
# To add a package, add one line to PACKAGES below (keep one name per line).
set -euo pipefail

PACKAGES=(
  # build
  build-essential
  pkg-config
  libseccomp-dev
  libjansson-dev
  libmicrohttpd-dev
  libsqlite3-dev
  libcurl4-openssl-dev
  libsecp256k1-dev
  libssl-dev  # SHA-256 of image layers (libcrypto)
  musl-tools  # sbx-init against musl: no CPUID storm at start (see Makefile)
  # images: mmdebstrap --mode=root builds the rootfs of the built-in images
  mmdebstrap
  debian-archive-keyring
  gpg
  mount
  e2fsprogs  # mkfs.ext4 for volumes
  # tests
  libcmocka-dev
  python3
  python3-pytest
  python3-requests
  iproute2
  procps
  curl
  ca-certificates
  # benchmarks: peers and the timer
  bubblewrap
  crun
  hyperfine
)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps.sh: run as root (or install sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}"
