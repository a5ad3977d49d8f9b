import { stringify } from "yaml";
import type { ApplyResult } from "./apply.ts";
import { registryLabel, type RegistryEntry } from "./registry.ts";
import type { RefresherState } from "./state.ts";

/**
 * The status ConfigMap `kube-system/acr-credential-status`, readable with `kubectl get cm -o yaml`:
 * when the refresher last ran and with what result, each registry's expiry or error, what failed
 * where. `state.json` is the refresher's memory of its own Secrets (see state.ts).
 */
export const statusConfigMap = { namespace: "kube-system", name: "acr-credential-status" } as const;

export type RunResult = "Succeeded" | "PartiallyFailed" | "Failed";

export interface RegistryStatus {
  registry: RegistryEntry;
  expiresAt?: string;
  /** The broker's code and message for this registry (never a credential). */
  error?: { code: string; message: string };
  stale?: boolean;
}

export interface StatusInput {
  finishedAt: Date;
  durationMs: number;
  mode: "once" | "watch";
  registries: readonly RegistryStatus[];
  /** Set when no credential could be fetched at all. */
  brokerError?: { code: string; message: string };
  namespacesServed: number;
  result: ApplyResult;
  state: RefresherState;
}

/** Status key present only while the broker is being retried (throttled, unavailable). */
export const brokerRetryingKey = "broker-retrying";

/** The `broker-retrying` value: since when, how often, the last error, when the next attempt is, and until when it goes on. */
export function brokerRetryingStatus(input: {
  since: Date;
  retry: { code: string; message: string; attempts: number };
  nextAttemptAt: Date;
  until?: Date;
}): string {
  return stringify({
    since: input.since.toISOString(),
    attempts: input.retry.attempts,
    lastError: `${input.retry.code}: ${input.retry.message}`,
    nextAttemptAt: input.nextAttemptAt.toISOString(),
    ...(input.until === undefined ? {} : { until: input.until.toISOString() }),
  });
}

/** At most this many failures are listed; the count is always exact. */
const listLimit = 50;

/**
 * A conflict that leaves a namespace or ServiceAccount without the refresher's Secret fails the run;
 * a leftover it will not delete (`unrecorded`) is reported, but serves nobody less.
 */
const servesLess = (conflict: ApplyResult["conflicts"][number]): boolean => conflict.kind !== "unrecorded";

export function runResult(input: Pick<StatusInput, "registries" | "brokerError" | "result">): RunResult {
  if (input.brokerError !== undefined && input.result.counts.secretsApplied === 0) return "Failed";
  const problems =
    input.result.failures.length + input.result.conflicts.filter(servesLess).length + input.registries.filter((r) => r.error !== undefined).length;
  return problems === 0 && input.brokerError === undefined ? "Succeeded" : "PartiallyFailed";
}

/** Exit code of a run: 0 when everything succeeded, 1 when anything failed (2 is for configuration errors, before any write). */
export function exitCodeOf(result: RunResult): 0 | 1 {
  return result === "Succeeded" ? 0 : 1;
}

function limited<T>(items: readonly T[]): { items: T[]; more: number } {
  return { items: items.slice(0, listLimit), more: Math.max(0, items.length - listLimit) };
}

export function statusData(input: StatusInput): Record<string, string> {
  const { result } = input;
  const failures = limited(result.failures);
  const conflicts = limited(result.conflicts);
  const data: Record<string, string> = {
    "last-run": input.finishedAt.toISOString(),
    result: runResult(input),
    mode: input.mode,
    summary: stringify({
      namespacesServed: input.namespacesServed,
      secretsApplied: result.counts.secretsApplied,
      serviceAccountsPatched: result.counts.serviceAccountsPatched,
      secretsDeleted: result.counts.secretsDeleted,
      namespacesFailed: result.counts.namespacesFailed,
      failures: result.failures.length,
      conflicts: result.conflicts.length,
      durationMs: Math.round(input.durationMs),
    }),
    registries: stringify(
      input.registries.map((status) => ({
        registry: registryLabel(status.registry),
        secret: status.registry.secretName,
        ...(status.registry.domains.length > 0 ? { domains: status.registry.domains } : {}),
        ...(status.expiresAt !== undefined ? { expiresAt: status.expiresAt } : {}),
        ...(status.stale === true ? { stale: true } : {}),
        ...(status.error !== undefined ? { error: `${status.error.code}: ${status.error.message}` } : {}),
      })),
    ),
    failures: stringify([
      ...failures.items.map((f) => ({ namespace: f.namespace, object: `${f.kind}/${f.name}`, code: f.code, message: f.message })),
      ...(failures.more > 0 ? [{ more: failures.more }] : []),
    ]),
    conflicts: stringify([...conflicts.items, ...(conflicts.more > 0 ? [{ more: conflicts.more }] : [])]),
    "state.json": JSON.stringify(input.state),
  };
  // Named in watch-namespace but absent: not a failure (it may be created later), but never silent.
  if (result.missingNamespaces !== undefined && result.missingNamespaces.length > 0) data["missing-namespaces"] = stringify(result.missingNamespaces);
  if (input.brokerError !== undefined) data["broker-error"] = `${input.brokerError.code}: ${input.brokerError.message}`;
  return data;
}
