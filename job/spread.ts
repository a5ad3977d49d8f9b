/**
 * Fleet spread: every refresher of a fleet runs on the same `*\/5` schedule, so without a delay they
 * all reach the broker in the same second. Each cluster waits a delay of its own before it asks,
 * derived from a stable identity of the cluster (the `kube-system` namespace's uid), so the delay is
 * the same on every run of one cluster and uniformly spread across clusters within the window.
 * See docs/refresher.md ("When it asks the broker").
 */
import { createHash } from "node:crypto";
import type { NamespaceInfo } from "./plan.ts";

/** Default window: fits the CronJob's `activeDeadlineSeconds` (240) with two minutes left for the run itself. */
export const defaultSpreadWindowSeconds = 120;

/** The namespace whose uid identifies a cluster: every cluster has it, and it is never re-created. */
export const clusterIdentityNamespace = "kube-system";

/** The cluster's identity from a namespace list, or `undefined` when `kube-system` is not in it. */
export function clusterIdentity(namespaces: readonly NamespaceInfo[]): string | undefined {
  const uid = namespaces.find((ns) => ns.name === clusterIdentityNamespace)?.uid;
  return uid === undefined || uid === "" ? undefined : uid;
}

/** This cluster's delay in [0, windowMs): deterministic for one identity, uniform across identities. */
export function spreadDelayMs(identity: string | undefined, windowMs: number): number {
  if (identity === undefined || !(windowMs > 0)) return 0;
  const digest = createHash("sha256").update(`acr-credential-broker/spread/${identity}`).digest();
  // 48 bits of the hash as a fraction in [0, 1): fine enough for any window in milliseconds.
  const fraction = digest.readUIntBE(0, 6) / 2 ** 48;
  return Math.floor(fraction * windowMs);
}
