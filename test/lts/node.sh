#!/usr/bin/env bash
# Prints the path of the Node.js LTS binary the shipped artefacts target (the refresher image and the
# custom-runtime broker), fetched once into .cache/node/<version> by job/fetch-node.sh — the script the
# image build runs — with the hash job/Dockerfile pins. The version is recorded in test/lts/NODE_VERSION.
# With --arch arm64 it fetches the arm64 build instead (into .cache/node/<version>-arm64), which checks
# that pin too.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
arch=amd64
if [ "${1:-}" = "--arch" ]; then arch="${2:?--arch needs amd64 or arm64}"; fi
version="$(tr -d '[:space:]' < "$root/test/lts/NODE_VERSION")"
pin() { sed -n "s/^ARG $1=//p" "$root/job/Dockerfile"; }
dir="$root/.cache/node/$version"
if [ "$arch" != amd64 ]; then dir="$dir-$arch"; fi
if [ ! -x "$dir/bin/node" ]; then
  NODE_VERSION="$version" TARGETARCH="$arch" NODE_INTEGRITY_AMD64="$(pin NODE_INTEGRITY_AMD64)" \
    NODE_INTEGRITY_ARM64="$(pin NODE_INTEGRITY_ARM64)" sh "$root/job/fetch-node.sh" "$dir" >&2
fi
echo "$dir/bin/node"
