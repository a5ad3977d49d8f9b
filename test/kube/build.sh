#!/usr/bin/env bash
# Builds the kube-apiserver and etcd that the Kubernetes tests start, at the versions pinned in
# go.mod next to this script, into .cache/kube/<kubernetes version>/bin at the repository root.
# Binaries already there are reused. Go keeps its module and build caches where it always does
# (GOMODCACHE, GOCACHE), so a rebuild after a version bump only compiles what changed.
#
#   bash test/kube/build.sh                 kube-apiserver and etcd
#   bash test/kube/build.sh --with-kubectl  kubectl as well
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

with_kubectl=false
for arg in "$@"; do
  case "$arg" in
    --with-kubectl) with_kubectl=true ;;
    -h | --help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

pinned_version() { awk -v module="$1" '$1 == module && $2 ~ /^v/ { print $2; exit }' "$here/go.mod"; }
kubernetes_version="$(pinned_version k8s.io/kubernetes)"
etcd_version="$(pinned_version go.etcd.io/etcd/server/v3)"
if [ -z "$kubernetes_version" ] || [ -z "$etcd_version" ]; then
  echo "build.sh: test/kube/go.mod does not pin k8s.io/kubernetes and go.etcd.io/etcd/server/v3; run test/kube/pin.sh" >&2
  exit 1
fi
bin="$root/.cache/kube/$kubernetes_version/bin"

targets=("kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver" "etcd go.etcd.io/etcd/server/v3")
$with_kubectl && targets+=("kubectl k8s.io/kubernetes/cmd/kubectl")
missing=()
for target in "${targets[@]}"; do
  [ -x "$bin/${target%% *}" ] || missing+=("$target")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "kube binaries present, not rebuilding: Kubernetes $kubernetes_version, etcd $etcd_version in ${bin#"$root"/}"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: Go 1.26 or newer is needed to build the Kubernetes test binaries (or set KUBEBUILDER_ASSETS)" >&2
  exit 1
fi

minor="${kubernetes_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kubernetes_version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
export CGO_ENABLED=0

mkdir -p "$bin"
cd "$here"
echo "building Kubernetes $kubernetes_version, etcd $etcd_version into ${bin#"$root"/} with $(go version | cut -d' ' -f3)"
started=$SECONDS
for target in "${missing[@]}"; do
  name="${target%% *}"
  package="${target#* }"
  step_started=$SECONDS
  echo "--- $name ($package)"
  # Build beside the target and rename, so an interrupted build never leaves a binary that looks complete.
  go build -trimpath -ldflags "$ldflags" -o "$bin/.$name.partial" "$package"
  mv -f "$bin/.$name.partial" "$bin/$name"
  echo "    $name built in $((SECONDS - step_started))s"
done
echo "kube binaries built in $((SECONDS - started))s: ${bin#"$root"/}"
