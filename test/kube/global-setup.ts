import type { TestProject } from "vitest/node";
import { findPinnedKubeBinaries } from "./binaries.ts";
import { startControlPlane, type ControlPlaneEndpoints } from "./control-plane.ts";

/** What the `kube` project's test files receive: one shared control plane, or why there is none. */
export type KubeTestEnv = ({ available: true } & ControlPlaneEndpoints) | { available: false; reason: string };

declare module "vitest" {
  interface ProvidedContext {
    kube: KubeTestEnv;
  }
}

const inCi = (): boolean => ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase());

/**
 * Starts one control plane for the whole `kube` project. Without binaries the suite fails in CI
 * and skips elsewhere, saying once how to build them.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const lookup = findPinnedKubeBinaries();
  if (!lookup.found) {
    if (inCi()) throw new Error(`Kubernetes tests cannot run in CI: ${lookup.reason}`);
    console.warn(`Kubernetes tests skipped: ${lookup.reason}`);
    project.provide("kube", { available: false, reason: lookup.reason });
    return undefined;
  }

  const { stop, startedInMs, ...endpoints } = await startControlPlane({ binaries: lookup.binaries });
  console.log(`Kubernetes control plane ready in ${startedInMs} ms at ${endpoints.apiserverUrl}`);
  project.provide("kube", { available: true, ...endpoints });
  return stop;
}
