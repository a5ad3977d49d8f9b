import pLimit from "p-limit";
import type { Logger } from "../shared/log.ts";
import { isAcrCredentialError, oneLine } from "../shared/errors.ts";
import { statusOf, type ClusterApi, type RefresherEvent } from "./cluster.ts";
import { eventReasons, eventRecorder, namedEvent, type EventRecorder } from "./events.ts";
import { diffServiceAccount, type NamespacePlan, type Plan, type ServiceAccountEdit, type ServiceAccountInfo } from "./plan.ts";
import { annotations, type DesiredSecret } from "./secret.ts";
import { serviceAccountPatch } from "./service-account-patch.ts";
import type { SecretOutcome } from "./state.ts";
import { retry } from "../shared/retry.ts";

/** Something that could not be done in one namespace; the other namespaces carry on. */
export interface Failure {
  namespace: string;
  kind: "Secret" | "ServiceAccount" | "ConfigMap";
  name: string;
  code: string;
  message: string;
}

/**
 * Something only a person can resolve, reported (status, log, a Warning Event) and left alone:
 * `exists` a Secret of the refresher's name that someone else created; `replaced` the refresher's
 * Secret was replaced by another under the same name (its uid changed); `unrecorded` a Secret named
 * as the refresher's that it has no record of creating, so it will not delete it; `applied` a
 * ServiceAccount whose `imagePullSecrets` another field manager applies, so the refresher does not
 * edit it (`secret` then names the entries it lacks or should drop).
 */
export interface Conflict {
  namespace: string;
  secret: string;
  kind: "exists" | "replaced" | "unrecorded" | "applied";
  serviceAccount?: string;
  managers?: string[];
  message: string;
}

export interface ApplyResult {
  outcomes: SecretOutcome[];
  failures: Failure[];
  conflicts: Conflict[];
  counts: { secretsApplied: number; serviceAccountsPatched: number; secretsDeleted: number; namespacesFailed: number };
  /** Namespaces named literally in `watch-namespace` that do not exist (nothing to do there; reported). */
  missingNamespaces?: string[];
}

export interface ApplyContext {
  cluster: ClusterApi;
  secrets: ReadonlyMap<string, DesiredSecret>;
  /** The ServiceAccounts the plan was computed from, so the first patch needs no GET. */
  serviceAccounts: readonly ServiceAccountInfo[];
  logger: Logger;
  concurrency?: number;
  /** Attempts for a ServiceAccount patch that loses a race (409/422) before it counts as failed. */
  patchAttempts?: number;
  sleep?: (milliseconds: number) => Promise<void>;
  random?: () => number;
  /** Where conflict Events go; a `--watch` refresher keeps one, so repeats fold into a series. */
  events?: EventRecorder;
}

const causeFields = (error: unknown): string[] => (isAcrCredentialError(error) ? (error.details.causes ?? []) : []).map((cause) => cause.field ?? "");
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** The admission policy of job/deploy/base/secret-policy.yaml refused a write: the Secret is not the refresher's. */
export const secretPolicyName = "acr-credential-refresher-own-secrets";
const refusedByPolicy = (error: unknown): boolean => statusOf(error) === 403 && messageOf(error).includes(secretPolicyName);

/**
 * An apply that a foreign object refuses: 409 is a field-manager conflict on a Secret someone else
 * wrote; 422 on `type` is a Secret of the same name with another type, which is immutable; 422 on
 * `metadata.uid` is a Secret replaced since the refresher created it; 403 from the admission policy
 * is any Secret that is not the refresher's own.
 */
function isForeignSecret(error: unknown): boolean {
  const status = statusOf(error);
  if (status === 409 || refusedByPolicy(error)) return true;
  return status === 422 && causeFields(error).some((field) => field === "type" || field === "metadata.uid");
}

/** An apply with a uid precondition whose Secret no longer exists (someone deleted it): write it anew. */
const vanished = (error: unknown): boolean => statusOf(error) === 409 && messageOf(error).includes("no existing object was found");

function errorCode(error: unknown): string {
  return typeof (error as { code?: unknown }).code === "string" ? (error as { code: string }).code : "Internal";
}

/** A result with nothing done: where every count starts. */
export function nothingApplied(): ApplyResult {
  return { outcomes: [], failures: [], conflicts: [], counts: { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 } };
}

/**
 * Carries out a plan with bounded concurrency. Within a namespace: Secrets first, then ServiceAccount
 * edits (an entry is only added once its Secret exists), then deletions (after the entries pointing
 * at them are gone). A failure is recorded and the rest goes on.
 */
export async function apply(plan: Plan, context: ApplyContext): Promise<ApplyResult> {
  const limit = pLimit(context.concurrency ?? 16);
  const accounts = new Map(context.serviceAccounts.map((sa) => [`${sa.namespace}/${sa.name}`, sa]));
  const result: ApplyResult = { ...nothingApplied(), outcomes: plan.forget.map(({ secret, namespace }) => ({ kind: "gone", secret, namespace })) };
  const missing = plan.skipped.filter((skip) => skip.reason === "not-found").map((skip) => skip.namespace);
  if (missing.length > 0) {
    result.missingNamespaces = missing;
    context.logger.warn({ namespaces: missing }, "namespaces named in watch-namespace do not exist");
  }
  await Promise.all(plan.namespaces.map((ns) => limit(() => applyNamespace(ns, context, accounts, result))));
  // Counted per namespace at the end: namespaces finish in any order, so no running total is right.
  result.counts.namespacesFailed = new Set(
    [...result.failures, ...result.conflicts.filter((conflict) => conflict.kind !== "unrecorded")].map((problem) => problem.namespace),
  ).size;
  await reportConflicts(result.conflicts, context, accounts);
  return result;
}

async function applyNamespace(ns: NamespacePlan, context: ApplyContext, accounts: Map<string, ServiceAccountInfo>, result: ApplyResult): Promise<void> {
  const { cluster, logger } = context;
  const unavailable = new Set<string>();

  for (const item of ns.apply) {
    const desired = context.secrets.get(item.secret);
    if (desired === undefined) continue;
    const recorded = ns.owned[item.secret];
    const manifest = desired.manifestFor(ns.namespace);
    try {
      // A Secret the refresher created is re-applied only while it is still that Secret (its uid).
      const written = await cluster.applySecret(manifest, recorded).catch((error: unknown) => {
        if (recorded !== undefined && vanished(error)) return cluster.applySecret(manifest);
        throw error;
      });
      result.counts.secretsApplied += 1;
      result.outcomes.push({
        kind: "applied",
        secret: item.secret,
        namespace: ns.namespace,
        uid: ns.uid,
        fingerprint: desired.fingerprint,
        expiresAt: desired.expiresAt,
        secretUid: written.uid,
      });
      logger.debug({ namespace: ns.namespace, secret: item.secret, reason: item.reason }, "secret applied");
    } catch (error) {
      unavailable.add(item.secret);
      if (isForeignSecret(error)) {
        const message =
          recorded === undefined
            ? `a Secret named ${item.secret} already exists and is not the refresher's; it was left alone (rename or delete it to let the refresher serve this namespace)`
            : `the refresher's Secret ${item.secret} was replaced by one it did not create; it was left alone (delete it to let the refresher write its own again)`;
        result.conflicts.push({ namespace: ns.namespace, secret: item.secret, kind: recorded === undefined ? "exists" : "replaced", message });
        result.outcomes.push({ kind: "foreign", secret: item.secret, namespace: ns.namespace });
        logger.warn({ namespace: ns.namespace, secret: item.secret }, "secret owned by someone else, left alone");
      } else {
        result.failures.push({ namespace: ns.namespace, kind: "Secret", name: item.secret, code: errorCode(error), message: oneLine(error) });
        result.outcomes.push({ kind: "failed", secret: item.secret, namespace: ns.namespace, uid: ns.uid });
        logger.error({ namespace: ns.namespace, secret: item.secret, code: errorCode(error), err: error }, "secret apply failed");
      }
    }
  }

  for (const edit of ns.serviceAccounts) {
    const want = edit.want.filter((name) => !unavailable.has(name));
    const listed = accounts.get(`${ns.namespace}/${edit.name}`);
    try {
      const patched = await patchServiceAccount(context, ns.namespace, edit, want, listed);
      if (patched) result.counts.serviceAccountsPatched += 1;
    } catch (error) {
      result.failures.push({ namespace: ns.namespace, kind: "ServiceAccount", name: edit.name, code: errorCode(error), message: oneLine(error) });
      logger.error({ namespace: ns.namespace, serviceAccount: edit.name, code: errorCode(error), err: error }, "service account patch failed");
    }
  }

  for (const sa of ns.applied) {
    const entries = [...sa.missing, ...sa.stale];
    const change = [sa.missing.length > 0 ? `lacks ${sa.missing.join(", ")}` : "", sa.stale.length > 0 ? `still lists ${sa.stale.join(", ")}` : ""]
      .filter((part) => part !== "")
      .join(" and ");
    result.conflicts.push({
      namespace: ns.namespace,
      secret: entries.join(","),
      kind: "applied",
      serviceAccount: sa.name,
      managers: [...sa.managers],
      message: `ServiceAccount ${sa.name} ${change}, but its imagePullSecrets are applied by ${sa.managers.join(", ")}, so the refresher leaves it alone; list the refresher's Secrets in that manifest, or annotate the ServiceAccount ${annotations.exclude}=true (docs/troubleshooting.md)`,
    });
    logger.warn(
      { namespace: ns.namespace, serviceAccount: sa.name, managers: sa.managers, missing: sa.missing, stale: sa.stale },
      "service account applied by another manager, left alone",
    );
  }

  for (const secret of ns.unrecorded) {
    result.conflicts.push({
      namespace: ns.namespace,
      secret,
      kind: "unrecorded",
      message: `${secret} is named as the refresher's, but the refresher has no record of creating it here, so it does not delete it; delete it yourself if it is a leftover, or remove it from the ${annotations.managedPullSecrets} annotation`,
    });
    // Remembered from before uids were recorded: reported once, then forgotten.
    result.outcomes.push({ kind: "gone", secret, namespace: ns.namespace });
    logger.warn({ namespace: ns.namespace, secret }, "secret without a recorded uid, left alone");
  }

  // A Secret is only deleted when no ServiceAccount patch in this namespace failed: one may still list it.
  const saFailed = result.failures.some((failure) => failure.namespace === ns.namespace && failure.kind === "ServiceAccount");
  for (const secret of saFailed ? [] : ns.delete) {
    const uid = ns.owned[secret];
    if (uid === undefined) continue;
    try {
      const outcome = await cluster.deleteSecret(ns.namespace, secret, uid);
      if (outcome === "deleted") result.counts.secretsDeleted += 1;
      result.outcomes.push({ kind: "deleted", secret, namespace: ns.namespace });
      logger.info({ namespace: ns.namespace, secret, outcome }, "stale secret removed");
    } catch (error) {
      if (statusOf(error) === 409 || refusedByPolicy(error)) {
        // The uid precondition failed (or the policy saw a foreign Secret): it is no longer the one the refresher created.
        result.conflicts.push({
          namespace: ns.namespace,
          secret,
          kind: "replaced",
          message: `the refresher's Secret ${secret} was replaced by one it did not create; it was left alone, not deleted`,
        });
        result.outcomes.push({ kind: "foreign", secret, namespace: ns.namespace });
        logger.warn({ namespace: ns.namespace, secret }, "secret replaced by someone else, not deleted");
        continue;
      }
      result.failures.push({ namespace: ns.namespace, kind: "Secret", name: secret, code: errorCode(error), message: oneLine(error) });
      logger.error({ namespace: ns.namespace, secret, code: errorCode(error), err: error }, "secret delete failed");
    }
  }
}

/**
 * One Warning Event per conflict, in its namespace, about the object concerned: `kubectl get events`
 * there says why the refresher left it alone and what to do. A conflict that persists is one Event
 * whose series counts the runs that saw it (events.ts). An Event that cannot be written is logged;
 * it never fails the run.
 */
async function reportConflicts(conflicts: readonly Conflict[], context: ApplyContext, accounts: Map<string, ServiceAccountInfo>): Promise<void> {
  if (conflicts.length === 0) return;
  const recorder = context.events ?? eventRecorder(context.cluster, context.logger);
  await recorder.record(
    conflicts.map((conflict) =>
      conflictEvent(conflict, conflict.serviceAccount === undefined ? undefined : accounts.get(`${conflict.namespace}/${conflict.serviceAccount}`)?.uid),
    ),
  );
}

const conflictReasons: Record<Conflict["kind"], string> = {
  exists: eventReasons.secretNameTaken,
  replaced: eventReasons.secretReplaced,
  unrecorded: eventReasons.secretNotRecorded,
  applied: eventReasons.serviceAccountApplied,
};

/** The Event of a conflict; `uid` is the ServiceAccount's, so that `kubectl describe` shows it (a foreign Secret cannot be read). */
export function conflictEvent(conflict: Conflict, uid?: string): RefresherEvent {
  const regarding =
    conflict.kind === "applied"
      ? { kind: "ServiceAccount", name: conflict.serviceAccount ?? "", ...(uid === undefined ? {} : { uid }) }
      : { kind: "Secret", name: conflict.secret };
  return namedEvent({ namespace: conflict.namespace, reason: conflictReasons[conflict.kind], action: "LeftAlone", note: conflict.message, regarding });
}

/**
 * One ServiceAccount edit: first against the listed version (no GET), then, each time another
 * writer got there first (409, or 422 from the failed `resourceVersion` test), against a fresh GET
 * with the edit recomputed, so both writers' changes survive. Returns false when nothing was needed.
 */
async function patchServiceAccount(
  context: ApplyContext,
  namespace: string,
  edit: ServiceAccountEdit,
  want: readonly string[],
  listed: ServiceAccountInfo | undefined,
): Promise<boolean> {
  let current = listed ?? (await context.cluster.getServiceAccount(namespace, edit.name));
  return retry(
    async (_remainingMs, attempt) => {
      if (attempt > 0) current = await context.cluster.getServiceAccount(namespace, edit.name);
      if (current === undefined) return false;
      const { add, remove } = diffServiceAccount(current, want, edit.keep, edit.removable);
      if (add.length === 0 && remove.length === 0) return false;
      await context.cluster.patchServiceAccount(namespace, edit.name, serviceAccountPatch(current, add, remove));
      context.logger.debug({ namespace, serviceAccount: edit.name, add, remove }, "service account patched");
      return true;
    },
    {
      // Another writer's edit lands within milliseconds: short waits, a few attempts, no deadline of their own.
      policy: { baseDelayMs: 50, maxDelayMs: 400, maxAttempts: context.patchAttempts ?? 6 },
      deadline: Number.POSITIVE_INFINITY,
      classify: (error) => ({ retry: statusOf(error) === 409 || statusOf(error) === 422 }),
      onRetry: ({ attempts }) =>
        context.logger.debug({ namespace, serviceAccount: edit.name, attempt: attempts }, "service account changed meanwhile; re-reading"),
      ...(context.sleep === undefined ? {} : { sleep: context.sleep }),
      ...(context.random === undefined ? {} : { random: context.random }),
    },
  );
}
