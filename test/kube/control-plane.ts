// The control plane lives with the sandbox that also runs it (`acr-credential local --with-cluster`).
export * from "../../cli/sandbox/control-plane.ts";
