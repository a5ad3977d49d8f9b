import pLimit from "p-limit";
import { maxMinValiditySeconds, type Credential, type EntryError } from "../shared/broker-api.ts";
import { AcrCredentialError, codeOf, oneLine } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { ApplyResult } from "./apply.ts";
import type { BrokerClient, BrokerRetry, CredentialsQuery } from "./broker-client.ts";
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
import { parseRefresherConfig, type RefresherConfig } from "./config.ts";
import { eventRecorder } from "./events.ts";
import { chooseNamespace, namespacesToRead, planSummary, type NamespaceInfo, type Plan, type ServiceAccountInfo } from "./plan.ts";
import { missingPullSecrets, type PullSecretEvent } from "./pull-secret-events.ts";
import { matchCredentials, registryLabel, registryRequest, type RegistryEntry } from "./registry.ts";
import { desiredSecret, type DesiredSecret } from "./secret.ts";
import { clusterIdentity, spreadDelayMs } from "./spread.ts";
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
  const source = `ConfigMap ${ref.namespace}/${ref.name}`;
  if (data === undefined)
    throw new AcrCredentialError(
      "ConfigInvalid",
      `${source} does not exist; create it (job/deploy/examples/acr-configuration.yaml is a sample) or pass --config-map`,
    );
  const withOverride =
    brokerUrl === undefined ? data : { ...Object.fromEntries(Object.entries(data).filter(([key]) => key !== "brokerUrl")), "broker-url": brokerUrl };
  const { config, warnings } = parseRefresherConfig(withOverride, source);
  for (const warning of warnings) logger.warn({ configMap: source }, warning);
  return config;
}

export interface FetchedCredentials {
  secrets: Map<string, DesiredSecret>;
  registries: RegistryStatus[];
  brokerError?: { code: string; message: string };
  earliestExpiry?: Date;
}

export interface FetchOptions {
  /** Credentials expiring within this many seconds are renewed with `force` (default: `expiring-threshold`). */
  renewWithinSeconds?: number;
  /** Registries (by Secret name) whose credential in hand is known to expire within that window: asked with `force` at once. */
  renew?: ReadonlySet<string>;
  /** No broker retry starts after this time (ms since the epoch). */
  deadlineAt?: number;
  /** Told before each wait while the broker is retried. */
  onRetry?: (retry: BrokerRetry) => void | Promise<void>;
  /** Ends the broker calls early (the watcher stops, or its configuration changed). */
  signal?: AbortSignal;
  /**
   * A scheduled run: ask for every registry in one request, for credentials valid at least this long
   * (the broker refreshes its entry once for every cluster asking, decision 007). `force` is used
   * instead only against a broker too old to know the field.
   */
  minValiditySeconds?: number;
  /** `--resync` or the resync annotation: every registry with `force`, for this cluster alone. */
  force?: boolean;
}

/**
 * How long a request may be retried: an unforced one until the run's deadline (a throttled broker is
 * waited out); a forced one keeps the client's own short budget, as a refused `force` falls back to
 * the broker's cache rather than waiting.
 */
function retryOptions(options: FetchOptions, force: boolean): Pick<CredentialsQuery, "deadlineAt" | "onRetry" | "signal"> {
  return {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(force || options.deadlineAt === undefined ? {} : { deadlineAt: options.deadlineAt }),
    ...(force || options.onRetry === undefined ? {} : { onRetry: options.onRetry }),
  };
}

type Matched = Map<string, { credential?: Credential; error?: EntryError }>;

/**
 * Asks the broker for every configured registry (one request, whatever the number of namespaces).
 * With `minValiditySeconds` (a scheduled run) or `force` (a resync) that one request is all; else,
 * and when the broker refuses `minValiditySeconds` as unknown, without `force` for those not known
 * to be expiring, then with `force` for those known to be expiring and those whose answer expires
 * within the renewal window. A credential that has already expired is never written.
 */
export async function fetchCredentials(
  config: RefresherConfig,
  broker: BrokerClient,
  logger: Logger,
  now: Date,
  options: FetchOptions = {},
): Promise<FetchedCredentials> {
  const failAll = (error: unknown): FetchedCredentials => {
    if (error instanceof AcrCredentialError && (error.code === "ConfigInvalid" || error.code === "FileUnreadable")) throw error;
    const brokerError = { code: codeOf(error), message: oneLine(error) };
    logger.error({ code: brokerError.code, err: brokerError }, "broker request failed");
    return { secrets: new Map(), registries: config.registries.map((registry) => ({ registry, error: brokerError })), brokerError };
  };
  let matched: Matched | FetchedCredentials;
  if (options.force === true || options.minValiditySeconds !== undefined) {
    const query = options.force === true ? { force: true } : { minValiditySeconds: options.minValiditySeconds! };
    try {
      const response = await broker.fetchCredentials({
        registries: config.registries.map((registry) => registryRequest(registry, config.rrsa)),
        ...query,
        ...retryOptions(options, query.force === true),
      });
      matched = matchCredentials(config.registries, response.credentials, response.errors);
    } catch (error) {
      if (error instanceof AcrCredentialError && (error.code === "ConfigInvalid" || error.code === "FileUnreadable")) throw error;
      // A broker older than minValiditySeconds refuses it as an unknown field; a refused force
      // (RateLimited) still leaves the broker's cached credentials to ask for. Anything else (the
      // broker unreachable, failing) would fail the same way again.
      const code = codeOf(error);
      const oldBroker = code === "InvalidRequest" && query.minValiditySeconds !== undefined;
      if (!oldBroker && !(code === "RateLimited" && query.force === true)) return failAll(error);
      logger.warn(
        { code, err: error },
        oldBroker ? "the broker does not know minValiditySeconds; renewing as before" : "forced renewal refused; asking without force",
      );
      matched = await askInTwoSteps(config, broker, logger, now, oldBroker ? options : {}, failAll, options);
    }
  } else matched = await askInTwoSteps(config, broker, logger, now, options, failAll, options);
  if (!(matched instanceof Map)) return matched;
  return fetchedFrom(config, matched, logger, now);
}

/** Without `minValiditySeconds`: unforced for the registries not known to be expiring, then forced for the expiring ones. */
async function askInTwoSteps(
  config: RefresherConfig,
  broker: BrokerClient,
  logger: Logger,
  now: Date,
  options: FetchOptions,
  failAll: (error: unknown) => FetchedCredentials,
  retrying: FetchOptions,
): Promise<Matched | FetchedCredentials> {
  const ask = (registries: readonly RegistryEntry[], force: boolean) =>
    broker.fetchCredentials({
      registries: registries.map((registry) => registryRequest(registry, config.rrsa)),
      ...(force ? { force: true } : {}),
      ...retryOptions(retrying, force),
    });
  const renewFirst = config.registries.filter((registry) => options.renew?.has(registry.secretName) === true);
  const rest = config.registries.filter((registry) => !renewFirst.includes(registry));

  let matched: Matched = new Map();
  if (rest.length > 0) {
    try {
      const response = await ask(rest, false);
      matched = matchCredentials(rest, response.credentials, response.errors);
    } catch (error) {
      return failAll(error);
    }
  }
  const thresholdMs = (options.renewWithinSeconds ?? config.expiringThresholdSeconds) * 1000;
  const expiresSoon = (expiresAt: string | undefined) =>
    expiresAt === undefined || Number.isNaN(Date.parse(expiresAt)) || Date.parse(expiresAt) - now.getTime() <= thresholdMs;

  const renew = [
    ...renewFirst,
    ...rest.filter((registry) => {
      const credential = matched.get(registry.secretName)?.credential;
      return credential !== undefined && expiresSoon(credential.expiresAt);
    }),
  ];
  if (renew.length > 0) {
    try {
      const forced = await ask(renew, true);
      const rematched = matchCredentials(renew, forced.credentials, forced.errors);
      for (const registry of renew) {
        const fresh = rematched.get(registry.secretName);
        const old = matched.get(registry.secretName)?.credential;
        if (fresh?.credential !== undefined && (old === undefined || Date.parse(fresh.credential.expiresAt) > Date.parse(old.expiresAt)))
          matched.set(registry.secretName, { credential: fresh.credential });
        else if (old === undefined && fresh !== undefined) matched.set(registry.secretName, fresh);
      }
    } catch (error) {
      logger.warn({ code: codeOf(error), err: error, registries: renew.map(registryLabel) }, "forced renewal failed; asking without force");
      // A refused `force` (e.g. RateLimited) still leaves the broker's cached credentials to ask for.
      if (renewFirst.length > 0) {
        try {
          const response = await ask(renewFirst, false);
          for (const [secret, entry] of matchCredentials(renewFirst, response.credentials, response.errors)) matched.set(secret, entry);
        } catch (retryError) {
          if (rest.length === 0) return failAll(retryError);
          const reported = { code: codeOf(retryError), message: oneLine(retryError) };
          for (const registry of renewFirst) matched.set(registry.secretName, { error: { ...reported, regionId: registry.regionId ?? "" } });
        }
      }
    }
  }
  return matched;
}

/** The Secrets to write and the status per registry from the broker's answers; an expired credential is refused. */
function fetchedFrom(config: RefresherConfig, matched: Matched, logger: Logger, now: Date): FetchedCredentials {
  const secrets = new Map<string, DesiredSecret>();
  const registries: RegistryStatus[] = [];
  let earliest: number | undefined;
  for (const registry of config.registries) {
    const { credential, error } = matched.get(registry.secretName) ?? {};
    if (credential === undefined) {
      const reported =
        error === undefined
          ? { code: "UpstreamError", message: "the broker returned no credential for this registry" }
          : { code: error.code, message: error.message };
      logger.error({ registry: registryLabel(registry), code: reported.code, err: reported }, "no credential for registry");
      registries.push({ registry, error: reported });
      continue;
    }
    const expiresAt = Date.parse(credential.expiresAt);
    if (Number.isNaN(expiresAt) || expiresAt <= now.getTime()) {
      const reported = { code: "BrokerResponseInvalid", message: `the broker returned a credential that expired at ${credential.expiresAt}` };
      logger.error({ registry: registryLabel(registry), expiresAt: credential.expiresAt }, "expired credential refused");
      registries.push({ registry, error: reported });
      continue;
    }
    earliest = earliest === undefined ? expiresAt : Math.min(earliest, expiresAt);
    secrets.set(registry.secretName, desiredSecret(registry, credential, config.notifyEmail));
    const status: RegistryStatus = { registry, expiresAt: credential.expiresAt };
    if (credential.stale === true) status.stale = true;
    registries.push(status);
    logger.info(
      { registry: registryLabel(registry), secret: registry.secretName, expiresAt: credential.expiresAt, stale: credential.stale === true },
      "credential received",
    );
  }
  const fetched: FetchedCredentials = { secrets, registries };
  if (earliest !== undefined) fetched.earliestExpiry = new Date(earliest);
  return fetched;
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
      logger.warn({ code: retry.code, err: retry, attempts: retry.attempts, delayMs: retry.delayMs }, "broker busy or unreachable; retrying");
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
    // Nothing applied: the result of no reconcile.
    const dry = report(thePlan, new Tally().result(), now());
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
