#!/usr/bin/env bash
# Builds what the kubelet credential provider tests run: the plugin (kubelet-provider/build.sh) and
# `keyring`, a small program around the kubelet's own credential provider code from the
# k8s.io/kubernetes release pinned in test/kube/go.mod (go.mod here must pin the same one), into
# .cache/kubelet-provider/<kubernetes version>/bin. A keyring newer than its source is reused.
#
#   bash test/kubelet-provider/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
case "${1:-}" in
  "") ;;
  -h | --help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) echo "build.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac

pinned() { awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$1"; }
kubernetes_version="$(pinned "$here/go.mod")"
control_plane_version="$(pinned "$root/test/kube/go.mod")"
if [ -z "$kubernetes_version" ] || [ "$kubernetes_version" != "$control_plane_version" ]; then
  echo "build.sh: test/kubelet-provider/go.mod pins k8s.io/kubernetes ${kubernetes_version:-nothing}, test/kube/go.mod $control_plane_version; copy the require and replace lines of test/kube/go.mod here and run go mod tidy" >&2
  exit 1
fi
bin="$root/.cache/kubelet-provider/$kubernetes_version/bin"

bash "$root/kubelet-provider/build.sh" "$bin"
if [ -x "$bin/keyring" ] && [ "$bin/keyring" -nt "$here/keyring/main.go" ] && [ "$bin/keyring" -nt "$here/go.mod" ]; then
  echo "keyring present, not rebuilding: Kubernetes $kubernetes_version in ${bin#"$root"/}"
  exit 0
fi
started=$SECONDS
cd "$here"
# Same flags as the control plane's build, so Go's build cache serves the shared packages.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/.keyring.partial" ./keyring
mv -f "$bin/.keyring.partial" "$bin/keyring"
echo "keyring (Kubernetes $kubernetes_version) built in $((SECONDS - started))s: ${bin#"$root"/}"
