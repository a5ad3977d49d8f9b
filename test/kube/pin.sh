#!/usr/bin/env bash
# Pins the test control plane to one Kubernetes release: rewrites go.mod from that release's own
# go.mod (one replace per staging module, its go/godebug lines) plus the etcd server that the
# release's k8s.io/apiserver requires, then tidies go.sum. go.mod is the only place the versions live.
#
#   bash test/kube/pin.sh v1.36.3
set -euo pipefail
cd "$(dirname "$0")"

version="${1:-}"
if [[ ! "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "usage: bash test/kube/pin.sh v1.MINOR.PATCH" >&2
  exit 2
fi
# Staging modules are published as v0.MINOR.PATCH alongside each v1.MINOR.PATCH release.
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

downloaded_go_mod() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

kubernetes_mod="$(downloaded_go_mod "k8s.io/kubernetes@$version")"
apiserver_mod="$(downloaded_go_mod "k8s.io/apiserver@$staging_version")"
[ -f "$kubernetes_mod" ] && [ -f "$apiserver_mod" ] || { echo "pin.sh: could not download the go.mod files of $version" >&2; exit 1; }

go_line="$(grep -m1 '^go ' "$kubernetes_mod")"
godebug_line="$(grep -m1 '^godebug ' "$kubernetes_mod" || true)"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$apiserver_mod")"
[ -n "$etcd_version" ] || { echo "pin.sh: k8s.io/apiserver $staging_version does not require go.etcd.io/etcd/server/v3" >&2; exit 1; }
mapfile -t staging < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$kubernetes_mod" | sort)
[ ${#staging[@]} -gt 0 ] || { echo "pin.sh: no staging replaces found in k8s.io/kubernetes $version" >&2; exit 1; }

{
  echo "// Written by pin.sh from k8s.io/kubernetes $version's own go.mod; rerun it to change versions."
  echo "module acr-credential-broker/test/kube"
  echo
  echo "$go_line"
  [ -n "$godebug_line" ] && { echo; echo "$godebug_line"; }
  echo
  echo "tool ("
  echo "	go.etcd.io/etcd/server/v3"
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kubectl"
  echo ")"
  echo
  echo "require ("
  echo "	go.etcd.io/etcd/server/v3 $etcd_version"
  echo "	k8s.io/kubernetes $version"
  echo ")"
  echo
  echo "replace ("
  for module in "${staging[@]}"; do
    echo "	$module => $module $staging_version"
  done
  echo ")"
} > go.mod
rm -f go.sum

go mod tidy
echo "pinned k8s.io/kubernetes $version (${#staging[@]} staging modules at $staging_version), etcd $etcd_version"
