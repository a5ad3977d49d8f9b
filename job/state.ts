import { z } from "zod";

/**
 * What the refresher knows about its own Secrets without reading any: for each Secret name, the
 * fingerprint last applied and the namespaces (by name and a prefix of their uid, so a namespace
 * deleted and re-created under the same name counts as new) that hold it. Kept in the status
 * ConfigMap under `state.json`; see docs/decisions/002-no-secret-reads.md.
 */
export const secretRecordSchema = z.object({
  fingerprint: z.string(),
  expiresAt: z.string().optional(),
  /** Namespaces whose Secret has exactly `fingerprint`. */
  current: z.record(z.string(), z.string()),
  /** Namespaces holding an older version of the refresher's Secret (a failed update). */
  outdated: z.record(z.string(), z.string()),
  /**
   * The `metadata.uid` of the Secret the refresher's own apply created in each namespace, from the
   * apply's response: the only Secrets it re-applies with a precondition and ever deletes
   * (docs/decisions/005-secret-ownership-by-uid.md). Absent for Secrets written before it was kept.
   */
  uids: z.record(z.string(), z.string()).optional(),
});
export type SecretRecord = z.infer<typeof secretRecordSchema>;

export const refresherStateSchema = z.object({
  version: z.literal(1),
  secrets: z.record(z.string(), secretRecordSchema),
});
export type RefresherState = z.infer<typeof refresherStateSchema>;

export const emptyState = (): RefresherState => ({ version: 1, secrets: {} });

/** The short uid kept per namespace: enough to tell a re-created namespace apart, small for 2,000 of them. */
export const shortUid = (uid: string | undefined): string => (uid ?? "").replace(/-/g, "").slice(0, 8);

/** Parses `state.json`; anything unreadable yields an empty state, which only costs one full re-apply. */
export function parseState(text: string | undefined): RefresherState {
  if (text === undefined || text.trim() === "") return emptyState();
  try {
    const parsed = refresherStateSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : emptyState();
  } catch {
    return emptyState();
  }
}

/** True when the state says this namespace holds the refresher's Secret (any version). */
export function holds(state: RefresherState, secretName: string, namespace: string, uid: string): boolean {
  const record = state.secrets[secretName];
  if (record === undefined) return false;
  const short = shortUid(uid);
  return record.current[namespace] === short || record.outdated[namespace] === short;
}

/** True when the state says this namespace already holds exactly this content. */
export function isCurrent(state: RefresherState, secretName: string, fingerprint: string, namespace: string, uid: string): boolean {
  const record = state.secrets[secretName];
  return record !== undefined && record.fingerprint === fingerprint && record.current[namespace] === shortUid(uid);
}

/** The uid of the Secret the refresher created in this namespace, if it recorded one (decision 005). */
export function secretUid(state: RefresherState, secretName: string, namespace: string, uid: string): string | undefined {
  return holds(state, secretName, namespace, uid) ? state.secrets[secretName]?.uids?.[namespace] : undefined;
}

/** One observed outcome for a Secret in a namespace, fed back into the state after an apply. */
export type SecretOutcome =
  | { kind: "applied"; secret: string; namespace: string; uid: string; fingerprint: string; expiresAt: string; secretUid?: string }
  | { kind: "failed"; secret: string; namespace: string; uid: string }
  | { kind: "foreign" | "deleted" | "gone"; secret: string; namespace: string };

/** The next state from the previous one and this run's outcomes; pure, so watch mode and run-once agree. */
export function nextState(previous: RefresherState, outcomes: readonly SecretOutcome[]): RefresherState {
  const secrets: Record<string, SecretRecord> = {};
  for (const [name, record] of Object.entries(previous.secrets)) {
    secrets[name] = { ...record, current: { ...record.current }, outdated: { ...record.outdated } };
  }
  const recordOf = (name: string): SecretRecord => (secrets[name] ??= { fingerprint: "", current: {}, outdated: {} });
  for (const outcome of outcomes) {
    const record = recordOf(outcome.secret);
    switch (outcome.kind) {
      case "applied":
        if (record.fingerprint !== outcome.fingerprint) {
          // New content: every namespace not yet re-applied now holds the older version.
          Object.assign(record.outdated, record.current);
          record.current = {};
          record.fingerprint = outcome.fingerprint;
          record.expiresAt = outcome.expiresAt;
        }
        delete record.outdated[outcome.namespace];
        record.current[outcome.namespace] = shortUid(outcome.uid);
        if (outcome.secretUid !== undefined && outcome.secretUid !== "") record.uids = { ...record.uids, [outcome.namespace]: outcome.secretUid };
        break;
      case "failed":
        // The write may or may not have landed: remember the Secret as ours so it is cleaned up later.
        delete record.current[outcome.namespace];
        record.outdated[outcome.namespace] = shortUid(outcome.uid);
        break;
      case "foreign":
      case "deleted":
      case "gone":
        delete record.current[outcome.namespace];
        delete record.outdated[outcome.namespace];
        if (record.uids !== undefined) {
          const { [outcome.namespace]: _forgotten, ...rest } = record.uids;
          record.uids = rest;
        }
        break;
    }
  }
  for (const record of Object.values(secrets)) if (record.uids !== undefined && Object.keys(record.uids).length === 0) delete record.uids;
  for (const [name, record] of Object.entries(secrets)) {
    if (Object.keys(record.current).length === 0 && Object.keys(record.outdated).length === 0) delete secrets[name];
  }
  return { version: 1, secrets };
}
