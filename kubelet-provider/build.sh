#!/usr/bin/env bash
# Builds the kubelet image credential provider plugin: a static binary (CGO_ENABLED=0, standard
# library only) for the nodes, into .cache/kubelet-provider/bin at the repository root, or into the
# folder given. GOOS/GOARCH choose the platform (default: this machine's), e.g. GOARCH=arm64.
#
#   bash kubelet-provider/build.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
case "${1:-}" in
  -h | --help) sed -n '2,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
out="${1:-$root/.cache/kubelet-provider/bin}"
if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: Go 1.26 or newer is needed to build the kubelet credential provider" >&2
  exit 1
fi
version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json" | head -n 1)"
mkdir -p "$out"
cd "$here"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${version:-dev}" -o "$out/.acr-credential-kubelet-provider.partial" .
mv -f "$out/.acr-credential-kubelet-provider.partial" "$out/acr-credential-kubelet-provider"
echo "built ${out#"$root"/}/acr-credential-kubelet-provider ($(go env GOOS)/$(go env GOARCH), $(du -k "$out/acr-credential-kubelet-provider" | cut -f1) KiB)"
