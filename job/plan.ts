import { literalNames, matchesPattern, selects, type RefresherConfig } from "./config.ts";
import { isRefresherSecretName } from "./registry.ts";
import { annotations, type DesiredSecret } from "./secret.ts";
import { holds, isCurrent, shortUid, type RefresherState } from "./state.ts";

/**
 * The reconcile plan as pure data: from the configuration, this run's credentials, the namespaces and
 * ServiceAccounts as listed and what the refresher remembers of its own Secrets, decide which Secrets
 * to apply where, which ServiceAccount entries to add or remove and which Secrets to delete. Nothing
 * here performs I/O; `apply.ts` carries the plan out.
 */

export interface NamespaceInfo {
  name: string;
  uid: string;
  /** `metadata.deletionTimestamp` is set: the namespace is going away and must not be written to. */
  terminating: boolean;
  annotations: Readonly<Record<string, string>>;
}

export interface ServiceAccountInfo {
  namespace: string;
  name: string;
  resourceVersion: string;
  imagePullSecrets: ReadonlyArray<{ name?: string }>;
  annotations: Readonly<Record<string, string>>;
}

export type SkipReason = "excluded" | "annotated" | "terminating" | "not-found";

export interface SecretApply {
  secret: string;
  /** `new`: not known to exist here; `changed`: new credentials; `repair`: a ServiceAccount lacks it; `resync`: asked for. */
  reason: "new" | "changed" | "repair" | "resync";
}

export interface ServiceAccountEdit {
  name: string;
  resourceVersion: string;
  /** The refresher's entries this ServiceAccount must list, in configuration order. */
  want: string[];
  /** The refresher's entries it may keep listing; any other entry the refresher added is removed. */
  keep: string[];
  add: string[];
  remove: string[];
}

export interface NamespacePlan {
  namespace: string;
  uid: string;
  /** False when the namespace is no longer chosen and only the refresher's own objects are removed. */
  chosen: boolean;
  apply: SecretApply[];
  serviceAccounts: ServiceAccountEdit[];
  /** The refresher's own Secrets to delete, after their ServiceAccount entries are removed. */
  delete: string[];
}

export interface Plan {
  namespaces: NamespacePlan[];
  skipped: Array<{ namespace: string; reason: SkipReason }>;
  /** Namespaces the state remembers that are gone or going: forgotten without any request. */
  forget: Array<{ secret: string; namespace: string }>;
}

export interface PlanInput {
  config: RefresherConfig;
  /** Registries with a usable credential this run, by Secret name. */
  secrets: ReadonlyMap<string, DesiredSecret>;
  /** Every namespace listed (for a namespace list: at least the named ones that exist). */
  namespaces: readonly NamespaceInfo[];
  /** ServiceAccounts of the namespaces returned by `namespacesToRead`. */
  serviceAccounts: readonly ServiceAccountInfo[];
  state: RefresherState;
  /** Watch mode: plan only these namespaces. */
  scope?: ReadonlySet<string>;
  /** Apply every Secret even when the state says it is current. */
  resync?: boolean;
}

/** The refresher's entries recorded on a ServiceAccount by its annotation. */
export function managedEntries(sa: Pick<ServiceAccountInfo, "annotations">): string[] {
  const value = sa.annotations[annotations.managedPullSecrets];
  return value === undefined ? [] : value.split(",").map((name) => name.trim()).filter((name) => name !== "");
}

/** What must change on a ServiceAccount so that it lists `want` and no refresher entry outside `keep`; foreign entries are never touched. */
export function diffServiceAccount(sa: Pick<ServiceAccountInfo, "imagePullSecrets" | "annotations">, want: readonly string[], keep: readonly string[]): { add: string[]; remove: string[] } {
  const listed = new Set(sa.imagePullSecrets.map((entry) => entry.name ?? ""));
  const keepSet = new Set(keep);
  const add = want.filter((name) => !listed.has(name));
  const remove = managedEntries(sa).filter((name) => listed.has(name) && !keepSet.has(name));
  return { add, remove: [...new Set(remove)] };
}

const perNamespaceListLimit = 50;

export type NamespaceChoice = { chosen: true } | { chosen: false; reason: SkipReason };

/** Whether the configuration serves a namespace, and why not. */
export function chooseNamespace(config: RefresherConfig, namespace: NamespaceInfo): NamespaceChoice {
  if (!selects(config.watchNamespace, namespace.name)) return { chosen: false, reason: "excluded" };
  if (config.excludeNamespaces.some((pattern) => matchesPattern(pattern, namespace.name))) return { chosen: false, reason: "excluded" };
  if (namespace.annotations[annotations.exclude]?.toLowerCase() === "true") return { chosen: false, reason: "annotated" };
  if (namespace.terminating) return { chosen: false, reason: "terminating" };
  return { chosen: true };
}

/**
 * Which namespaces need their ServiceAccounts read: the chosen ones, plus unchosen ones where the
 * state says the refresher left Secrets behind (to clean up). `clusterWide` means one paginated
 * cluster-wide list is cheaper than one list per namespace.
 */
export function namespacesToRead(config: RefresherConfig, namespaces: readonly NamespaceInfo[], state: RefresherState): { names: string[]; clusterWide: boolean } {
  const remembered = new Set(Object.values(state.secrets).flatMap((record) => [...Object.keys(record.current), ...Object.keys(record.outdated)]));
  const names = namespaces
    .filter((ns) => !ns.terminating && (chooseNamespace(config, ns).chosen || remembered.has(ns.name)))
    .map((ns) => ns.name);
  // Past a few dozen names one paginated cluster-wide list costs fewer requests than a list per namespace.
  const literal = literalNames(config.watchNamespace);
  return { names, clusterWide: literal === undefined || literal.length > perNamespaceListLimit };
}

export function plan(input: PlanInput): Plan {
  const { config, secrets, state } = input;
  const configured = config.registries.map((registry) => registry.secretName);
  const configuredSet = new Set(configured);
  const accountsByNamespace = new Map<string, ServiceAccountInfo[]>();
  for (const sa of input.serviceAccounts) {
    const list = accountsByNamespace.get(sa.namespace) ?? [];
    list.push(sa);
    accountsByNamespace.set(sa.namespace, list);
  }
  const inScope = (name: string) => input.scope === undefined || input.scope.has(name);

  const result: Plan = { namespaces: [], skipped: [], forget: [] };
  const listed = new Map(input.namespaces.map((ns) => [ns.name, ns]));

  // Namespaces the state remembers but that are gone, re-created or terminating: forget them.
  for (const [secret, record] of Object.entries(state.secrets)) {
    for (const [namespace, uid] of [...Object.entries(record.current), ...Object.entries(record.outdated)]) {
      if (!inScope(namespace)) continue;
      const ns = listed.get(namespace);
      if (ns === undefined || ns.terminating || shortUid(ns.uid) !== uid) result.forget.push({ secret, namespace });
    }
  }

  if (config.watchNamespace.kind === "list") {
    for (const name of literalNames(config.watchNamespace) ?? []) {
      if (!listed.has(name) && inScope(name)) result.skipped.push({ namespace: name, reason: "not-found" });
    }
  }

  for (const ns of [...input.namespaces].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!inScope(ns.name)) continue;
    const choice = chooseNamespace(config, ns);
    const accounts = accountsByNamespace.get(ns.name) ?? [];
    if (!choice.chosen) {
      const cleanup = ns.terminating ? undefined : cleanupPlan(ns, accounts, state);
      if (cleanup !== undefined) result.namespaces.push(cleanup);
      else if (selects(config.watchNamespace, ns.name) || choice.reason === "terminating") result.skipped.push({ namespace: ns.name, reason: choice.reason });
      continue;
    }

    const chosenAccounts = accounts.filter((sa) => selects(config.serviceAccount, sa.name));
    const apply: SecretApply[] = [];
    const want: string[] = [];
    for (const secret of configured) {
      const desired = secrets.get(secret);
      const held = holds(state, secret, ns.name, ns.uid);
      if (desired !== undefined) {
        const missingOnAccount = chosenAccounts.some((sa) => !sa.imagePullSecrets.some((entry) => entry.name === secret));
        if (input.resync === true) apply.push({ secret, reason: "resync" });
        else if (!held) apply.push({ secret, reason: "new" });
        else if (!isCurrent(state, secret, desired.fingerprint, ns.name, ns.uid)) apply.push({ secret, reason: "changed" });
        else if (missingOnAccount) apply.push({ secret, reason: "repair" });
        want.push(secret);
      } else if (held) {
        // No credential this run (the broker failed for it): keep serving what is there.
        want.push(secret);
      }
    }

    const edits: ServiceAccountEdit[] = [];
    for (const sa of accounts) {
      const chosen = chosenAccounts.includes(sa);
      const saWant = chosen ? want : [];
      const keep = chosen ? configured : [];
      const { add, remove } = diffServiceAccount(sa, saWant, keep);
      if (add.length > 0 || remove.length > 0) edits.push({ name: sa.name, resourceVersion: sa.resourceVersion, want: saWant, keep, add, remove });
    }

    const leftovers = new Set<string>();
    for (const [secret] of Object.entries(state.secrets)) if (!configuredSet.has(secret) && holds(state, secret, ns.name, ns.uid)) leftovers.add(secret);
    for (const sa of accounts) for (const name of managedEntries(sa)) if (!configuredSet.has(name) && isRefresherSecretName(name)) leftovers.add(name);

    if (apply.length > 0 || edits.length > 0 || leftovers.size > 0) {
      result.namespaces.push({ namespace: ns.name, uid: ns.uid, chosen: true, apply, serviceAccounts: edits, delete: [...leftovers].sort() });
    }
  }
  return result;
}

/** For a namespace no longer served: remove the refresher's entries and delete its Secrets, nothing else. */
function cleanupPlan(ns: NamespaceInfo, accounts: readonly ServiceAccountInfo[], state: RefresherState): NamespacePlan | undefined {
  const leftovers = new Set<string>();
  for (const [secret] of Object.entries(state.secrets)) if (holds(state, secret, ns.name, ns.uid)) leftovers.add(secret);
  const edits: ServiceAccountEdit[] = [];
  for (const sa of accounts) {
    for (const name of managedEntries(sa)) if (isRefresherSecretName(name)) leftovers.add(name);
    const { add, remove } = diffServiceAccount(sa, [], []);
    if (remove.length > 0) edits.push({ name: sa.name, resourceVersion: sa.resourceVersion, want: [], keep: [], add, remove });
  }
  if (leftovers.size === 0 && edits.length === 0) return undefined;
  return { namespace: ns.name, uid: ns.uid, chosen: false, apply: [], serviceAccounts: edits, delete: [...leftovers].sort() };
}

/** Counts for logs, the status ConfigMap and `--dry-run`. */
export function planSummary(p: Plan): { namespaces: number; secretsToApply: number; serviceAccountsToEdit: number; secretsToDelete: number; skipped: number } {
  return {
    namespaces: p.namespaces.length,
    secretsToApply: p.namespaces.reduce((sum, ns) => sum + ns.apply.length, 0),
    serviceAccountsToEdit: p.namespaces.reduce((sum, ns) => sum + ns.serviceAccounts.length, 0),
    secretsToDelete: p.namespaces.reduce((sum, ns) => sum + ns.delete.length, 0),
    skipped: p.skipped.length,
  };
}
