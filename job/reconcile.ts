/**
 * One reconcile, the only way the refresher writes: plan from the namespaces and ServiceAccounts as
 * listed and the credentials in hand, apply the plan, remember what was written (the state), and
 * report it (the status ConfigMap and the Events on the configuration). `--once` runs it once;
 * `--watch` runs it from its work queue, for one namespace or for all of them.
 *
 * What differs between the two modes stays with the caller: when to ask the broker, what the status
 * adds about it (`extra`), and whether the status is written now or later (`--watch` spaces its
 * writes; it then calls `writeStatus` itself).
 */
import { codeOf, oneLine } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { apply, nothingApplied, type ApplyResult, type Conflict, type Failure } from "./apply.ts";
import type { ClusterApi } from "./cluster.ts";
import type { RefresherConfig } from "./config.ts";
import { recordRunEvents, type EventRecorder } from "./events.ts";
import { chooseNamespace, plan, type NamespaceInfo, type Plan, type PlanInput } from "./plan.ts";
import type { DesiredSecret } from "./secret.ts";
import { nextState, parseState, type RefresherState } from "./state.ts";
import { statusConfigMap, statusData, type RegistryStatus, type StatusInput } from "./status.ts";

/** The I/O a reconcile uses, passed in. */
export interface ReconcileIo {
  cluster: ClusterApi;
  logger: Logger;
  /** One per process: an Event observed again is counted in its series, not sent again. */
  events: EventRecorder;
  now: () => Date;
  /** Writes in flight at once (default 16). */
  concurrency?: number;
}

/** The credentials in hand: the Secrets to write, and what the status says of each registry. */
export interface Credentials {
  secrets: ReadonlyMap<string, DesiredSecret>;
  registries: readonly RegistryStatus[];
  /** Set when no credential could be fetched at all. */
  brokerError?: { code: string; message: string };
}

/** What a plan is made from, with the credentials in hand in place of the bare Secrets. */
export type ReconcileInput = Omit<PlanInput, "secrets"> & { credentials: Credentials };

/** The plan a reconcile carries out (also what `--dry-run` prints). */
export function planOf(input: ReconcileInput): Plan {
  const { credentials, ...rest } = input;
  return plan({ ...rest, secrets: credentials.secrets });
}

/**
 * What the status reports of the reconciles so far: the counts added up, and the failures and
 * conflicts of the latest attempt in each namespace (a reconcile replaces those of its scope). A
 * `--once` run has one reconcile; a `--watch` refresher keeps one for its life.
 */
export class Tally {
  private readonly counts: ApplyResult["counts"] = nothingApplied().counts;
  private failures: Failure[] = [];
  private conflicts: Conflict[] = [];
  private missingNamespaces: string[] = [];

  record(scope: ReadonlySet<string> | undefined, result: ApplyResult): void {
    for (const key of Object.keys(this.counts) as Array<keyof ApplyResult["counts"]>) this.counts[key] += result.counts[key];
    const outside = <T extends { namespace: string }>(items: T[]): T[] => (scope === undefined ? [] : items.filter((item) => !scope.has(item.namespace)));
    this.failures = [...outside(this.failures), ...result.failures];
    this.conflicts = [...outside(this.conflicts), ...result.conflicts];
    if (scope === undefined) this.missingNamespaces = result.missingNamespaces ?? [];
  }

  /** The reconciles so far as one apply result, which the status and the Events are built from. */
  result(): ApplyResult {
    return {
      outcomes: [],
      failures: [...this.failures],
      conflicts: [...this.conflicts],
      counts: { ...this.counts },
      ...(this.missingNamespaces.length > 0 ? { missingNamespaces: [...this.missingNamespaces] } : {}),
    };
  }
}

/** How a status write reads in each mode. */
export interface StatusReport {
  mode: StatusInput["mode"];
  /** When the run (or the watcher) started: the status's duration counts from here. */
  since: Date;
  /** The configuration ConfigMap, which the run's Events are about. */
  configMap: { namespace: string; name: string; uid?: string };
  /** The keys of the mode, as of `finishedAt`: the broker memory (`--once`), the renewal timer (`--watch`). */
  extra: (finishedAt: Date) => Record<string, string>;
  /** Told every status written (the metrics read it). */
  observe?: (input: StatusInput) => void;
}

/** What a status is written from. */
export interface StatusSubject {
  config: RefresherConfig;
  credentials: Credentials;
  namespaces: readonly NamespaceInfo[];
  state: RefresherState;
  tally: Tally;
}

export const statusLabels = { "app.kubernetes.io/managed-by": "acr-credential-broker", "app.kubernetes.io/component": "status" };

/** The refresher's memory of its own Secrets, kept in the status ConfigMap. */
export async function readState(cluster: ClusterApi): Promise<RefresherState> {
  const data = await cluster.readConfigMap(statusConfigMap.namespace, statusConfigMap.name);
  return parseState(data?.["state.json"]);
}

/** Applies the status ConfigMap's data: every write of it goes through here. */
export async function applyStatus(cluster: ClusterApi, data: Record<string, string>): Promise<void> {
  await cluster.applyConfigMap(statusConfigMap.namespace, statusConfigMap.name, data, statusLabels);
}

/**
 * Writes the status (and with it the state) and the Events of what it reports. A status that
 * cannot be written is a failure of its own, returned and told in those Events too.
 */
export async function writeStatus(io: ReconcileIo, subject: StatusSubject, report: StatusReport, finishedAt = io.now()): Promise<Failure | undefined> {
  const { credentials } = subject;
  const input: StatusInput = {
    finishedAt,
    durationMs: finishedAt.getTime() - report.since.getTime(),
    mode: report.mode,
    registries: credentials.registries,
    ...(credentials.brokerError === undefined ? {} : { brokerError: credentials.brokerError }),
    namespacesServed: subject.namespaces.filter((ns) => chooseNamespace(subject.config, ns).chosen).length,
    result: subject.tally.result(),
    state: subject.state,
  };
  report.observe?.(input);
  let failure: Failure | undefined;
  try {
    await applyStatus(io.cluster, { ...statusData(input), ...report.extra(finishedAt) });
  } catch (error) {
    failure = {
      namespace: statusConfigMap.namespace,
      kind: "ConfigMap",
      name: statusConfigMap.name,
      code: codeOf(error),
      message: `status not written: ${oneLine(error)}`,
    };
    io.logger.error({ code: failure.code, err: error }, "status ConfigMap not written");
  }
  const told = failure === undefined ? input : { ...input, result: { ...input.result, failures: [...input.result.failures, failure] } };
  await recordRunEvents(io.events, io.cluster, told, report.configMap);
  return failure;
}

export interface Reconciled {
  plan: Plan;
  result: ApplyResult;
  /** The state after this reconcile (also written in the status, when it was written). */
  state: RefresherState;
  /** When the writes were done. */
  finishedAt: Date;
  /** The status could not be written (the Events say so too). */
  statusFailure?: Failure;
}

export interface ReconcileReport {
  /** Records this reconcile among those the status reports. */
  tally: Tally;
  /** Writes the status now, as this reads; absent: the caller writes it later. */
  status?: StatusReport;
  /** Told the plan before anything is written. */
  beforeApply?: (plan: Plan) => Promise<void>;
}

/**
 * Plans, applies, and reports. A scoped reconcile with nothing to do in its scope writes nothing
 * and returns `undefined`.
 */
export async function reconcile(io: ReconcileIo, input: ReconcileInput, report: ReconcileReport): Promise<Reconciled | undefined> {
  const thePlan = planOf(input);
  if (input.scope !== undefined && thePlan.namespaces.length === 0 && thePlan.forget.length === 0) return undefined;
  await report.beforeApply?.(thePlan);
  const result = await apply(thePlan, {
    cluster: io.cluster,
    secrets: input.credentials.secrets,
    serviceAccounts: input.serviceAccounts,
    logger: io.logger,
    concurrency: io.concurrency ?? 16,
    events: io.events,
  });
  const state = nextState(input.state, result.outcomes);
  report.tally.record(input.scope, result);
  const finishedAt = io.now();
  const reconciled: Reconciled = { plan: thePlan, result, state, finishedAt };
  if (report.status !== undefined) {
    const failure = await writeStatus(
      io,
      { config: input.config, credentials: input.credentials, namespaces: input.namespaces, state, tally: report.tally },
      report.status,
      finishedAt,
    );
    if (failure !== undefined) reconciled.statusFailure = failure;
  }
  return reconciled;
}
