// The lookup lives with the sandbox that also uses it (`acr-credential local --with-cluster`).
export * from "../../cli/sandbox/kube-binaries.ts";
