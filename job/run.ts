/**
 * `--once`: one run of the refresher, what its CronJob executes. It asks the broker only when its
 * memory says a credential is needed (broker-need.ts), after this cluster's spread delay, then runs
 * the one reconcile both modes share (reconcile.ts) once, over all its namespaces, and ends with an exit code.
 */
import pLimit from "p-limit";
import { maxMinValiditySeconds } from "../shared/broker-api.ts";
import { AcrCredentialError, codeOf } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { nothingApplied, type ApplyResult } from "./apply.ts";
import type { BrokerClient, BrokerRetry } from "./broker-client.ts";
import type { ClusterApi } from "./cluster.ts";
import {
  brokerNeed,
  brokerMemoryKey,
  brokerStatusData,
  describeReason,
  nextCallDue,
  parseBrokerMemory,
  rememberAnswer,
  resyncAnnotation,
  type BrokerMemory,
  type BrokerNeed,
} from "./broker-need.ts";
import { parseRefresherConfig, type ParsedConfig, type RefresherConfig } from "./config.ts";
import { eventRecorder } from "./events.ts";
import { chooseNamespace, namespacesToRead, planSummary, type NamespaceInfo, type Plan, type ServiceAccountInfo } from "./plan.ts";
import { missingPullSecrets, type PullSecretEvent } from "./pull-secret-events.ts";
import { registryLabel } from "./registry.ts";
import { clusterIdentity, spreadDelayMs } from "./spread.ts";
import { fetchCredentials, type FetchedCredentials } from "./fetch-credentials.ts";
import { applyStatus, planOf, reconcile, Tally, type ReconcileInput } from "./reconcile.ts";
import { parseState, type RefresherState } from "./state.ts";
import { brokerRetryingKey, brokerRetryingStatus, exitCodeOf, runResult, statusConfigMap, type RegistryStatus, type RunResult } from "./status.ts";
import { sleep } from "../shared/retry.ts";

/** Where the configuration lives; `--config-map` may point elsewhere. */
export interface ConfigMapRef {
  namespace: string;
  name: string;
}
export const defaultConfigMap: ConfigMapRef = { namespace: "kube-system", name: "acr-configuration" };

/** The refresher's ServiceAccount as job/deploy/base creates it (the add-on's name, kept). */
export const refresherServiceAccount = { namespace: "kube-system", name: "aliyun-acr-credential-helper" };

export interface RunDependencies {
  cluster: ClusterApi;
  /** Builds the broker client for the configured (or overriding) URL. */
  broker: (url: string) => BrokerClient;
  logger: Logger;
  now?: () => Date;
  /** Waits out the spread delay; the benchmark moves a simulated clock instead. */
  sleep?: (milliseconds: number) => Promise<void>;
}

/** The CronJob's schedule, `*\/5 * * * *`: a credential must stay outside the threshold until the next run. */
export const defaultIntervalSeconds = 300;

export interface RunOptions {
  configMap?: ConfigMapRef;
  /** Overrides the ConfigMap's `broker-url`. */
  brokerUrl?: string;
  /** Compute and return the plan; write nothing (not even the status). */
  dryRun?: boolean;
  /** Ask the broker and apply every Secret even when the refresher's memory says it is current. */
  resync?: boolean;
  concurrency?: number;
  /** The schedule's interval (`--schedule-interval`); default 300 s, the CronJob's `*\/5`. */
  intervalSeconds?: number;
  /** Overrides the ConfigMap's `spread-window` (`--spread-window`, `--no-spread`); 0 asks at once. */
  spreadWindowSeconds?: number;
  /** The run's time budget (`--deadline`, the Job's `activeDeadlineSeconds`); default 240 s as shipped. */
  deadlineSeconds?: number;
}

/** The CronJob's `activeDeadlineSeconds`. */
export const defaultDeadlineSeconds = 240;
/** Kept back from the deadline for applying what the broker answered and writing the status. */
const applyReserveMs = 30_000;

export interface RunReport {
  exitCode: 0 | 1;
  result: RunResult;
  plan: Plan;
  apply?: ApplyResult;
  registries: RegistryStatus[];
  /** The earliest credential expiry, for scheduling the next refresh. */
  earliestExpiry?: Date;
  /** Whether this run asked the broker, and why. */
  need: BrokerNeed;
  /** This cluster's spread delay; waited only when the run asked the broker (and not with `--dry-run`). */
  spreadDelayMs: number;
  /** When a run must ask the broker next, from the credentials in hand after this run. */
  nextCallDueAt: Date;
}

/** Validates the configuration ConfigMap's data (`undefined`: it does not exist); a missing or invalid ConfigMap is a `ConfigInvalid` (exit 2). */
export function configFromData(data: Record<string, string> | undefined, ref: ConfigMapRef, logger: Logger, brokerUrl?: string): RefresherConfig {
  const { config, warnings } = parseConfigData(data, ref, brokerUrl);
  for (const warning of warnings) logger.warn({ configMap: `ConfigMap ${ref.namespace}/${ref.name}` }, warning);
  return config;
}

/** `configFromData` with the warnings handed back instead of logged (doctor reports them). */
export function parseConfigData(data: Record<string, string> | undefined, ref: ConfigMapRef, brokerUrl?: string): ParsedConfig {
  const source = `ConfigMap ${ref.namespace}/${ref.name}`;
  if (data === undefined)
    throw new AcrCredentialError(
      "ConfigInvalid",
      `${source} does not exist; create it (job/deploy/examples/acr-configuration.yaml is a sample) or pass --config-map`,
    );
  const withOverride =
    brokerUrl === undefined ? data : { ...Object.fromEntries(Object.entries(data).filter(([key]) => key !== "brokerUrl")), "broker-url": brokerUrl };
  return parseRefresherConfig(withOverride, source);
}

/** A run that does not ask the broker: the credentials in hand, as remembered, and nothing to write. */
export function credentialsInHand(config: RefresherConfig, memory: BrokerMemory | undefined): FetchedCredentials {
  const registries: RegistryStatus[] = [];
  let earliest: number | undefined;
  for (const registry of config.registries) {
    const expiresAt = memory?.expiries[registry.secretName];
    registries.push(expiresAt === undefined ? { registry } : { registry, expiresAt });
    const at = Date.parse(expiresAt ?? "");
    if (!Number.isNaN(at)) earliest = earliest === undefined ? at : Math.min(earliest, at);
  }
  return { secrets: new Map(), registries, ...(earliest === undefined ? {} : { earliestExpiry: new Date(earliest) }) };
}

/** Lists the ServiceAccounts the plan needs: one cluster-wide paginated list, or one list per named namespace. */
export async function listServiceAccounts(
  cluster: ClusterApi,
  config: RefresherConfig,
  namespaces: readonly NamespaceInfo[],
  state: RefresherState,
  concurrency = 8,
): Promise<ServiceAccountInfo[]> {
  const wanted = namespacesToRead(config, namespaces, state);
  if (wanted.clusterWide) {
    const names = new Set(wanted.names);
    return (await cluster.listServiceAccounts()).filter((sa) => names.has(sa.namespace));
  }
  const limit = pLimit(concurrency);
  const lists = await Promise.all(wanted.names.map((name) => limit(() => cluster.listServiceAccounts(name))));
  return lists.flat();
}

/**
 * The kubelet's recent Events about the refresher's Secrets it could not find, by namespace. A
 * hint, not a requirement: without the permission to list Events (an older RBAC) it is logged once
 * and the run goes on without it.
 */
export async function missingSecrets(cluster: ClusterApi, config: RefresherConfig, logger: Logger, after: Date | undefined): Promise<Map<string, Set<string>>> {
  let events: PullSecretEvent[];
  try {
    events = await cluster.listPullSecretEvents();
  } catch (error) {
    logger.warn(
      { code: codeOf(error), err: error },
      "kubelet Events not read: a Secret deleted by hand comes back at the next renewal instead (list and watch on events, job/deploy/base/rbac.yaml)",
    );
    return new Map();
  }
  const missing = missingPullSecrets(
    events,
    config.registries.map((registry) => registry.secretName),
    after,
  );
  if (missing.size > 0)
    logger.warn(
      { namespaces: [...missing.keys()].slice(0, 20), count: missing.size },
      "the kubelet could not find the refresher's Secrets; writing them again",
    );
  return missing;
}

/**
 * One run of the refresher (what the CronJob executes). Configuration errors throw `ConfigInvalid`
 * before anything is written. The broker is asked only when `brokerNeed` says so, after this
 * cluster's spread delay; otherwise the run plans with no credentials (so it writes no Secret, only
 * clean-ups) and writes the status.
 */
export async function refreshOnce(deps: RunDependencies, options: RunOptions = {}): Promise<RunReport> {
  const now = deps.now ?? (() => new Date());
  const started = now();
  const deadlineAt = Date.now() + (options.deadlineSeconds ?? defaultDeadlineSeconds) * 1000 - applyReserveMs;
  const { cluster, logger } = deps;
  const ref = options.configMap ?? defaultConfigMap;
  const configMap = await cluster.readConfigMapWithAnnotations(ref.namespace, ref.name);
  const config = configFromData(configMap?.data, ref, logger, options.brokerUrl);
  const status = await cluster.readConfigMap(statusConfigMap.namespace, statusConfigMap.name);
  const state = parseState(status?.["state.json"]);
  const memory = parseBrokerMemory(status?.[brokerMemoryKey]);

  let namespaces = await cluster.listNamespaces();
  let serviceAccounts = await listServiceAccounts(cluster, config, namespaces, state);
  // Events older than the last broker call were answered by that run's applies (or are stale).
  const lastCallAt = memory?.lastCallAt === undefined ? undefined : new Date(memory.lastCallAt);
  const missing = await missingSecrets(cluster, config, logger, lastCallAt);
  const intervalSeconds = options.intervalSeconds ?? defaultIntervalSeconds;
  const resyncValue = configMap?.annotations[resyncAnnotation];
  const need = brokerNeed({
    config,
    memory,
    state,
    namespaces,
    serviceAccounts,
    now: started,
    intervalSeconds,
    resync: options.resync === true,
    resyncAnnotation: resyncValue,
    missingSecrets: missing,
  });
  const spreadWindowMs = (options.spreadWindowSeconds ?? config.spreadWindowSeconds) * 1000;
  const delayMs = spreadDelayMs(clusterIdentity(namespaces), spreadWindowMs);

  let fetched: FetchedCredentials;
  if (need.call) {
    logger.info({ reasons: need.reasons.map(describeReason), spreadDelayMs: delayMs }, "asking the broker");
    if (delayMs > 0 && options.dryRun !== true) {
      await (deps.sleep ?? sleep)(delayMs);
      // The lists are as old as the delay: read them again so that the plan sees what exists now.
      namespaces = await cluster.listNamespaces();
      serviceAccounts = await listServiceAccounts(cluster, config, namespaces, state);
    }
    // While the broker is throttled or unreachable, the status says so (written at most every 10 s).
    let retryingSince: Date | undefined;
    let lastRetryWrite = Number.NEGATIVE_INFINITY;
    const onRetry = async (retry: BrokerRetry) => {
      retryingSince ??= now();
      if (options.dryRun === true || Date.now() - lastRetryWrite < 10_000) return;
      lastRetryWrite = Date.now();
      const retrying = brokerRetryingStatus({
        since: retryingSince,
        retry,
        nextAttemptAt: new Date(now().getTime() + retry.delayMs),
        until: new Date(deadlineAt),
      });
      await applyStatus(cluster, { ...status, [brokerRetryingKey]: retrying }).catch((error: unknown) => {
        logger.warn({ code: codeOf(error), err: error }, "status ConfigMap not written while retrying the broker");
      });
    };
    // A scheduled renewal asks for credentials that outlast the next run's window, so that the fleet
    // shares the broker's one refresh (decision 007); a resync forces.
    const minValiditySeconds = Math.min(maxMinValiditySeconds, need.renewWithinSeconds + intervalSeconds);
    fetched = await fetchCredentials(config, deps.broker(config.brokerUrl), logger, now(), {
      renewWithinSeconds: need.renewWithinSeconds,
      renew: need.renew,
      minValiditySeconds,
      force: need.resync,
      deadlineAt,
      onRetry,
    });
  } else {
    fetched = credentialsInHand(config, memory);
    logger.info({ nextCallDueAt: need.nextCallDueAt.toISOString() }, "credentials in hand are current; not asking the broker");
  }
  const nextMemory: BrokerMemory =
    need.call || memory === undefined ? rememberAnswer(config, fetched.registries, started, resyncValue ?? memory?.resync) : memory;

  const input: ReconcileInput = { config, credentials: fetched, namespaces, serviceAccounts, state, resync: need.resync, reapply: missing };
  const served = namespaces.filter((ns) => chooseNamespace(config, ns).chosen).length;
  const planned = (thePlan: Plan) => logger.info({ namespacesServed: served, ...planSummary(thePlan), dryRun: options.dryRun === true }, "plan computed");
  const nextCallDueAt = (finished: Date) => nextCallDue(config.registries, nextMemory.expiries, need.renewWithinSeconds, finished);
  const report = (thePlan: Plan, applied: ApplyResult, finished: Date): RunReport => {
    const result = runResult({
      registries: fetched.registries,
      result: applied,
      ...(fetched.brokerError === undefined ? {} : { brokerError: fetched.brokerError }),
    });
    const out: RunReport = {
      exitCode: exitCodeOf(result),
      result,
      plan: thePlan,
      apply: applied,
      registries: fetched.registries,
      need,
      spreadDelayMs: delayMs,
      nextCallDueAt: nextCallDueAt(finished),
    };
    if (fetched.earliestExpiry !== undefined) out.earliestExpiry = fetched.earliestExpiry;
    return out;
  };
  if (options.dryRun === true) {
    const thePlan = planOf(input);
    planned(thePlan);
    const dry = report(thePlan, nothingApplied(), now());
    delete dry.apply;
    return dry;
  }

  const markUnfinished = async (thePlan: Plan) => {
    if (!need.call || memory === undefined || planSummary(thePlan).secretsToApply === 0) return;
    // Killed while it applies, this run would leave Secrets newer than the state says and no sign of
    // it; marked unfinished, the memory makes the next run ask again and rewrite them all.
    await applyStatus(cluster, { ...status, [brokerMemoryKey]: JSON.stringify({ ...memory, unfinished: true }) }).catch((error: unknown) => {
      logger.warn(
        { code: codeOf(error), err: error },
        "status ConfigMap not marked before applying; a run cut off now would go unnoticed until the next renewal",
      );
    });
  };
  const step = await reconcile({ cluster, logger, events: eventRecorder(cluster, logger, { now }), now, concurrency: options.concurrency ?? 16 }, input, {
    tally: new Tally(),
    beforeApply: async (thePlan) => {
      planned(thePlan);
      await markUnfinished(thePlan);
    },
    status: {
      mode: "once",
      since: started,
      configMap: { ...ref, ...(configMap?.uid === undefined ? {} : { uid: configMap.uid }) },
      extra: (finished) =>
        brokerStatusData({ need, memory: nextMemory, nextCallDueAt: nextCallDueAt(finished), spreadDelayMs: need.call ? delayMs : 0, spreadWindowMs }),
    },
  });
  // Never undefined: a run reconciles every namespace.
  const { plan: thePlan, result: applied, finishedAt: finished, statusFailure } = step!;
  if (statusFailure !== undefined) applied.failures.push(statusFailure);
  const out = report(thePlan, applied, finished);
  logger.info(
    {
      result: out.result,
      ...applied.counts,
      failures: applied.failures.length,
      conflicts: applied.conflicts.length,
      brokerAsked: need.call,
      nextCallDueAt: out.nextCallDueAt.toISOString(),
      durationMs: finished.getTime() - started.getTime(),
    },
    "run finished",
  );
  return out;
}

/** The plan as printed by `--dry-run`: what would be written where, never a credential. */
export function describePlan(report: RunReport): unknown {
  return {
    result: report.result,
    broker: {
      asked: report.need.call,
      reasons: report.need.reasons.map(describeReason),
      spreadDelayMs: report.spreadDelayMs,
      nextCallDueAt: report.nextCallDueAt.toISOString(),
    },
    summary: planSummary(report.plan),
    registries: report.registries.map((status) => ({
      registry: registryLabel(status.registry),
      secret: status.registry.secretName,
      ...(status.expiresAt === undefined ? {} : { expiresAt: status.expiresAt }),
      ...(status.error === undefined ? {} : { error: `${status.error.code}: ${status.error.message}` }),
    })),
    namespaces: report.plan.namespaces.map((ns) => ({
      namespace: ns.namespace,
      ...(ns.chosen ? {} : { cleanupOnly: true }),
      apply: ns.apply,
      serviceAccounts: ns.serviceAccounts.map((edit) => ({ name: edit.name, add: edit.add, remove: edit.remove })),
      delete: ns.delete,
      ...(ns.unrecorded.length > 0 ? { leftAlone: ns.unrecorded } : {}),
      ...(ns.applied.length > 0
        ? { appliedByOthers: ns.applied.map((sa) => ({ name: sa.name, managers: sa.managers, missing: sa.missing, stale: sa.stale })) }
        : {}),
    })),
    skipped: report.plan.skipped,
  };
}
