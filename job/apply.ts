import pLimit from "p-limit";
import type { Logger } from "../shared/log.ts";
import { oneLine } from "../shared/errors.ts";
import { statusOf, type ClusterApi } from "./cluster.ts";
import { diffServiceAccount, type NamespacePlan, type Plan, type ServiceAccountEdit, type ServiceAccountInfo } from "./plan.ts";
import type { DesiredSecret } from "./secret.ts";
import { serviceAccountPatch } from "./service-account-patch.ts";
import type { SecretOutcome } from "./state.ts";

/** Something that could not be done in one namespace; the other namespaces carry on. */
export interface Failure {
  namespace: string;
  kind: "Secret" | "ServiceAccount" | "ConfigMap";
  name: string;
  code: string;
  message: string;
}

/** A Secret of the refresher's name that someone else owns: reported and left alone. */
export interface Conflict {
  namespace: string;
  secret: string;
  message: string;
}

export interface ApplyResult {
  outcomes: SecretOutcome[];
  failures: Failure[];
  conflicts: Conflict[];
  counts: { secretsApplied: number; serviceAccountsPatched: number; secretsDeleted: number; namespacesFailed: number };
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
}

const defaultSleep = (milliseconds: number) => new Promise<void>((resolve) => setTimeout(resolve, milliseconds));

/**
 * An apply that a foreign object refuses: 409 is a field-manager conflict on a Secret someone else
 * wrote; 422 on `type` is a Secret of the same name with another type, which is immutable.
 */
function isForeignSecret(error: unknown): boolean {
  const status = statusOf(error);
  if (status === 409) return true;
  if (status !== 422) return false;
  const causes = (error as { details?: { causes?: Array<{ field?: string }> } }).details?.causes ?? [];
  return causes.some((cause) => cause.field === "type");
}

function errorCode(error: unknown): string {
  return typeof (error as { code?: unknown }).code === "string" ? (error as { code: string }).code : "Internal";
}

/**
 * Carries out a plan with bounded concurrency. Within a namespace: Secrets first, then ServiceAccount
 * edits (an entry is only added once its Secret exists), then deletions (after the entries pointing
 * at them are gone). A failure is recorded and the rest goes on.
 */
export async function apply(plan: Plan, context: ApplyContext): Promise<ApplyResult> {
  const limit = pLimit(context.concurrency ?? 16);
  const accounts = new Map(context.serviceAccounts.map((sa) => [`${sa.namespace}/${sa.name}`, sa]));
  const result: ApplyResult = {
    outcomes: plan.forget.map(({ secret, namespace }) => ({ kind: "gone", secret, namespace })),
    failures: [],
    conflicts: [],
    counts: { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 },
  };
  await Promise.all(plan.namespaces.map((ns) => limit(() => applyNamespace(ns, context, accounts, result))));
  return result;
}

async function applyNamespace(ns: NamespacePlan, context: ApplyContext, accounts: Map<string, ServiceAccountInfo>, result: ApplyResult): Promise<void> {
  const { cluster, logger } = context;
  const failuresBefore = result.failures.length + result.conflicts.length;
  const unavailable = new Set<string>();

  for (const item of ns.apply) {
    const desired = context.secrets.get(item.secret);
    if (desired === undefined) continue;
    try {
      await cluster.applySecret(desired.manifestFor(ns.namespace));
      result.counts.secretsApplied += 1;
      result.outcomes.push({ kind: "applied", secret: item.secret, namespace: ns.namespace, uid: ns.uid, fingerprint: desired.fingerprint, expiresAt: desired.expiresAt });
      logger.debug({ namespace: ns.namespace, secret: item.secret, reason: item.reason }, "secret applied");
    } catch (error) {
      unavailable.add(item.secret);
      if (isForeignSecret(error)) {
        result.conflicts.push({ namespace: ns.namespace, secret: item.secret, message: `a Secret named ${item.secret} already exists and is not the refresher's; it was left alone (rename or delete it to let the refresher serve this namespace)` });
        result.outcomes.push({ kind: "foreign", secret: item.secret, namespace: ns.namespace });
        logger.warn({ namespace: ns.namespace, secret: item.secret }, "secret owned by someone else, left alone");
      } else {
        result.failures.push({ namespace: ns.namespace, kind: "Secret", name: item.secret, code: errorCode(error), message: oneLine(error) });
        result.outcomes.push({ kind: "failed", secret: item.secret, namespace: ns.namespace, uid: ns.uid });
        logger.error({ namespace: ns.namespace, secret: item.secret, code: errorCode(error), err: oneLine(error) }, "secret apply failed");
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
      logger.error({ namespace: ns.namespace, serviceAccount: edit.name, code: errorCode(error), err: oneLine(error) }, "service account patch failed");
    }
  }

  // A Secret is only deleted when no ServiceAccount patch in this namespace failed: one may still list it.
  const saFailed = result.failures.some((failure) => failure.namespace === ns.namespace && failure.kind === "ServiceAccount");
  for (const secret of saFailed ? [] : ns.delete) {
    try {
      const outcome = await cluster.deleteSecret(ns.namespace, secret);
      if (outcome === "deleted") result.counts.secretsDeleted += 1;
      result.outcomes.push({ kind: "deleted", secret, namespace: ns.namespace });
      logger.info({ namespace: ns.namespace, secret, outcome }, "stale secret removed");
    } catch (error) {
      result.failures.push({ namespace: ns.namespace, kind: "Secret", name: secret, code: errorCode(error), message: oneLine(error) });
      logger.error({ namespace: ns.namespace, secret, code: errorCode(error), err: oneLine(error) }, "secret delete failed");
    }
  }

  if (result.failures.length + result.conflicts.length > failuresBefore) result.counts.namespacesFailed += 1;
}

/**
 * One ServiceAccount edit: first against the listed version (no GET), then, each time another
 * writer got there first (409, or 422 from the failed `resourceVersion` test), against a fresh GET
 * with the edit recomputed, so both writers' changes survive. Returns false when nothing was needed.
 */
async function patchServiceAccount(context: ApplyContext, namespace: string, edit: ServiceAccountEdit, want: readonly string[], listed: ServiceAccountInfo | undefined): Promise<boolean> {
  const attempts = context.patchAttempts ?? 6;
  const sleep = context.sleep ?? defaultSleep;
  const random = context.random ?? Math.random;
  let current = listed ?? (await context.cluster.getServiceAccount(namespace, edit.name));
  for (let attempt = 1; ; attempt += 1) {
    if (current === undefined) return false;
    const { add, remove } = diffServiceAccount(current, want, edit.keep);
    if (add.length === 0 && remove.length === 0) return false;
    try {
      await context.cluster.patchServiceAccount(namespace, edit.name, serviceAccountPatch(current, add, remove));
      context.logger.debug({ namespace, serviceAccount: edit.name, add, remove }, "service account patched");
      return true;
    } catch (error) {
      const status = statusOf(error);
      if ((status !== 409 && status !== 422) || attempt >= attempts) throw error;
      context.logger.debug({ namespace, serviceAccount: edit.name, attempt }, "service account changed meanwhile; re-reading");
      await sleep(Math.floor(random() * 50 * attempt));
      current = await context.cluster.getServiceAccount(namespace, edit.name);
    }
  }
}
