/**
 * The reconcile plan as pure data: from the configuration, this run's credentials, the namespaces and
 * ServiceAccounts as listed and what the refresher remembers of its own Secrets, decide which Secrets
 * to apply where, which ServiceAccount entries to add or remove and which Secrets to delete. Nothing
 * here performs I/O; `apply.ts` carries the plan out.
 */
import { literalNames, matchesPattern, selects, type RefresherConfig } from "./config.ts";
import { isRefresherSecretName } from "./registry.ts";
import { annotations, type DesiredSecret } from "./secret.ts";
import { holds, isCurrent, secretUid, shortUid, type RefresherState } from "./state.ts";

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
  /** For Events about it (apply.ts), so `kubectl describe` lists them. */
  uid?: string;
  resourceVersion: string;
  imagePullSecrets: ReadonlyArray<{ name?: string }>;
  annotations: Readonly<Record<string, string>>;
  /** Other field managers owning `imagePullSecrets` through server-side apply: the refresher never edits it then. */
  imagePullSecretsAppliers?: readonly string[];
}

export type SkipReason = "excluded" | "annotated" | "terminating" | "not-found";

export interface SecretApply {
  secret: string;
  /**
   * `new`: not known to exist here; `changed`: new credentials; `repair`: a ServiceAccount lacks it;
   * `resync`: asked for; `adopt`: written before the refresher recorded uids, applied once to learn it;
   * `missing`: the kubelet could not find it (deleted by hand).
   */
  reason: "new" | "changed" | "repair" | "resync" | "adopt" | "missing";
}

export interface ServiceAccountEdit {
  name: string;
  resourceVersion: string;
  /** The refresher's entries this ServiceAccount must list, in configuration order. */
  want: string[];
  /** The refresher's entries it may keep listing; any other entry the refresher added is removed. */
  keep: string[];
  /** The only entries it may remove: those of Secrets its state says it wrote in this namespace. */
  removable: string[];
  add: string[];
  remove: string[];
}

/** A ServiceAccount whose `imagePullSecrets` another manager applies: reported, never edited (no fight). */
export interface AppliedServiceAccount {
  name: string;
  managers: readonly string[];
  /** The refresher's Secrets it should list but does not. */
  missing: string[];
  /** Entries the refresher added that it would remove. */
  stale: string[];
}

export interface NamespacePlan {
  namespace: string;
  uid: string;
  /** False when the namespace is no longer chosen and only the refresher's own objects are removed. */
  chosen: boolean;
  apply: SecretApply[];
  serviceAccounts: ServiceAccountEdit[];
  /** The refresher's own Secrets to delete, after their ServiceAccount entries are removed; each has a uid in `owned`. */
  delete: string[];
  /** The uid of each Secret the refresher recorded creating here (decision 005): applies and deletes are conditional on it. */
  owned: Record<string, string>;
  /**
   * Secrets of the refresher's name shape it would clean up but cannot prove it created: named only in
   * a ServiceAccount's annotation, or remembered without a uid. Never deleted; reported.
   */
  unrecorded: string[];
  /** ServiceAccounts left alone because another manager applies their `imagePullSecrets`. */
  applied: AppliedServiceAccount[];
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
  /** Apply these Secrets (by namespace) even when the state says they are current: they were deleted. */
  reapply?: ReadonlyMap<string, ReadonlySet<string>>;
}

/** The refresher's entries recorded on a ServiceAccount by its annotation. */
export function managedEntries(sa: Pick<ServiceAccountInfo, "annotations">): string[] {
  const value = sa.annotations[annotations.managedPullSecrets];
  return value === undefined
    ? []
    : value
        .split(",")
        .map((name) => name.trim())
        .filter((name) => name !== "");
}

/**
 * What must change on a ServiceAccount so that it lists `want` and no refresher entry outside `keep`;
 * foreign entries are never touched, and with `removable` only those entries are ever removed.
 */
export function diffServiceAccount(
  sa: Pick<ServiceAccountInfo, "imagePullSecrets" | "annotations">,
  want: readonly string[],
  keep: readonly string[],
  removable?: readonly string[],
): { add: string[]; remove: string[] } {
  const listed = new Set(sa.imagePullSecrets.map((entry) => entry.name ?? ""));
  const keepSet = new Set(keep);
  const removableSet = removable === undefined ? undefined : new Set(removable);
  const add = want.filter((name) => !listed.has(name));
  const remove = managedEntries(sa).filter((name) => listed.has(name) && !keepSet.has(name) && (removableSet === undefined || removableSet.has(name)));
  return { add, remove: [...new Set(remove)] };
}

/** True when a person opted this ServiceAccount out with the `acr-credential-broker/exclude` annotation. */
export const optedOut = (sa: Pick<ServiceAccountInfo, "annotations">): boolean => sa.annotations[annotations.exclude]?.toLowerCase() === "true";

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
export function namespacesToRead(
  config: RefresherConfig,
  namespaces: readonly NamespaceInfo[],
  state: RefresherState,
): { names: string[]; clusterWide: boolean } {
  const remembered = new Set(Object.values(state.secrets).flatMap((record) => [...Object.keys(record.current), ...Object.keys(record.outdated)]));
  const names = namespaces.filter((ns) => !ns.terminating && (chooseNamespace(config, ns).chosen || remembered.has(ns.name))).map((ns) => ns.name);
  // Past a few dozen names one paginated cluster-wide list costs fewer requests than a list per namespace.
  // That includes namespaces read only for cleanup: narrowing from hundreds of namespaces to a few
  // must not cost one list per namespace left behind.
  const literal = literalNames(config.watchNamespace);
  return { names, clusterWide: literal === undefined || names.length > perNamespaceListLimit };
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

    const chosenAccounts = accounts.filter((sa) => selects(config.serviceAccount, sa.name) && !optedOut(sa));
    const owned = ownedSecrets(state, ns);
    const apply: SecretApply[] = [];
    const want: string[] = [];
    for (const secret of configured) {
      const desired = secrets.get(secret);
      const held = holds(state, secret, ns.name, ns.uid);
      if (desired !== undefined) {
        // A ServiceAccount another manager applies is not ours to repair: it is reported instead.
        const missingOnAccount = chosenAccounts.some(
          (sa) => sa.imagePullSecretsAppliers === undefined && !sa.imagePullSecrets.some((entry) => entry.name === secret),
        );
        if (input.resync === true) apply.push({ secret, reason: "resync" });
        else if (input.reapply?.get(ns.name)?.has(secret) === true) apply.push({ secret, reason: "missing" });
        else if (!held) apply.push({ secret, reason: "new" });
        else if (!isCurrent(state, secret, desired.fingerprint, ns.name, ns.uid)) apply.push({ secret, reason: "changed" });
        else if (missingOnAccount) apply.push({ secret, reason: "repair" });
        else if (owned[secret] === undefined) apply.push({ secret, reason: "adopt" });
        want.push(secret);
      } else if (held) {
        // No credential this run (the broker failed for it): keep serving what is there.
        want.push(secret);
      }
    }

    const held = heldSecrets(state, ns);
    const { edits, applied } = serviceAccountEdits(accounts, (sa) => (chosenAccounts.includes(sa) ? { want, keep: configured } : { want: [], keep: [] }), held);

    const leftovers = new Set<string>();
    for (const secret of held) if (!configuredSet.has(secret)) leftovers.add(secret);
    for (const sa of accounts) for (const name of managedEntries(sa)) if (!configuredSet.has(name) && isRefresherSecretName(name)) leftovers.add(name);

    const cleanup = sortLeftovers(leftovers, owned, applied);
    if (apply.length > 0 || edits.length > 0 || cleanup.delete.length > 0 || cleanup.unrecorded.length > 0 || applied.length > 0) {
      result.namespaces.push({ namespace: ns.name, uid: ns.uid, chosen: true, apply, serviceAccounts: edits, owned, applied, ...cleanup });
    }
  }
  return result;
}

/** The Secrets the state says the refresher wrote in this namespace (with or without a recorded uid). */
function heldSecrets(state: RefresherState, ns: NamespaceInfo): string[] {
  return Object.keys(state.secrets).filter((secret) => holds(state, secret, ns.name, ns.uid));
}

/** The uid of each Secret the refresher recorded creating in this namespace. */
function ownedSecrets(state: RefresherState, ns: NamespaceInfo): Record<string, string> {
  const owned: Record<string, string> = {};
  for (const secret of Object.keys(state.secrets)) {
    const uid = secretUid(state, secret, ns.name, ns.uid);
    if (uid !== undefined) owned[secret] = uid;
  }
  return owned;
}

/**
 * Edits for the ServiceAccounts of one namespace, except those whose `imagePullSecrets` another
 * manager applies: any edit there would make that manager's next apply conflict, or (forced) be
 * undone by it and redone by the refresher on every run. Those are returned to be reported.
 */
function serviceAccountEdits(
  accounts: readonly ServiceAccountInfo[],
  target: (sa: ServiceAccountInfo) => { want: string[]; keep: string[] },
  removable: string[],
): { edits: ServiceAccountEdit[]; applied: AppliedServiceAccount[] } {
  const edits: ServiceAccountEdit[] = [];
  const applied: AppliedServiceAccount[] = [];
  for (const sa of accounts) {
    const { want, keep } = target(sa);
    const { add, remove } = diffServiceAccount(sa, want, keep, removable);
    if (add.length === 0 && remove.length === 0) continue;
    if (sa.imagePullSecretsAppliers !== undefined && sa.imagePullSecretsAppliers.length > 0)
      applied.push({ name: sa.name, managers: sa.imagePullSecretsAppliers, missing: add, stale: remove });
    else edits.push({ name: sa.name, resourceVersion: sa.resourceVersion, want, keep, removable, add, remove });
  }
  return { edits, applied };
}

/**
 * Which leftovers may be deleted: only Secrets with a recorded uid (the delete is conditional on it),
 * and none that a ServiceAccount left alone still lists. The rest are reported, never deleted.
 */
function sortLeftovers(
  leftovers: ReadonlySet<string>,
  owned: Readonly<Record<string, string>>,
  applied: readonly AppliedServiceAccount[],
): { delete: string[]; unrecorded: string[] } {
  const stillListed = new Set(applied.flatMap((sa) => sa.stale));
  const sorted = [...leftovers].sort();
  return {
    delete: sorted.filter((secret) => owned[secret] !== undefined && !stillListed.has(secret)),
    unrecorded: sorted.filter((secret) => owned[secret] === undefined),
  };
}

/**
 * For a namespace no longer served: remove the refresher's entries and delete its Secrets, nothing
 * else. Only what the state holds counts here: a namespace that is not served and that the refresher
 * does not remember is none of its business, whatever its annotations say (and watch mode, which
 * sees every namespace, then agrees with a run, which reads only those).
 */
function cleanupPlan(ns: NamespaceInfo, accounts: readonly ServiceAccountInfo[], state: RefresherState): NamespacePlan | undefined {
  const held = heldSecrets(state, ns);
  const owned = ownedSecrets(state, ns);
  const leftovers = new Set<string>(held);
  const { edits, applied } = serviceAccountEdits(accounts, () => ({ want: [], keep: [] }), held);
  const cleanup = sortLeftovers(leftovers, owned, applied);
  if (cleanup.delete.length === 0 && cleanup.unrecorded.length === 0 && edits.length === 0 && applied.length === 0) return undefined;
  return { namespace: ns.name, uid: ns.uid, chosen: false, apply: [], serviceAccounts: edits, owned, applied, ...cleanup };
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
