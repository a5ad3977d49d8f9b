#!/usr/bin/env bash
# Builds the `helm` that the chart tests run, at the version pinned in go.mod next to this script
# (the one place it is recorded), into .cache/helm/<version>/bin/helm at the repository root.
# A binary already there is reused. Move to another release with:
#   (cd test/helm && go get -tool helm.sh/helm/v4/cmd/helm@vX.Y.Z && go mod tidy)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

case "${1:-}" in
  "") ;;
  -h | --help) sed -n '2,5s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) echo "build.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac

helm_version="$(awk '$1 == "helm.sh/helm/v4" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")"
if [ -z "$helm_version" ]; then
  echo "build.sh: test/helm/go.mod does not pin helm.sh/helm/v4; run go get -tool helm.sh/helm/v4/cmd/helm@vX.Y.Z there" >&2
  exit 1
fi
bin="$root/.cache/helm/$helm_version/bin"
if [ -x "$bin/helm" ]; then
  echo "helm present, not rebuilding: $helm_version in ${bin#"$root"/}"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: Go 1.26 or newer is needed to build helm (or set HELM_BINARY to a helm $helm_version)" >&2
  exit 1
fi

# The same version stamp helm's own Makefile sets, so `helm version` tells the truth.
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
export CGO_ENABLED=0
mkdir -p "$bin"
cd "$here"
echo "building helm $helm_version into ${bin#"$root"/} with $(go version | cut -d' ' -f3)"
started=$SECONDS
# Build beside the target and rename, so an interrupted build never leaves a binary that looks complete.
go build -trimpath -ldflags "$ldflags" -o "$bin/.helm.partial" helm.sh/helm/v4/cmd/helm
mv -f "$bin/.helm.partial" "$bin/helm"
echo "helm built in $((SECONDS - started))s: ${bin#"$root"/}"
