import pLimit from "p-limit";
import { AcrCredentialError, oneLine } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { apply, type ApplyResult } from "./apply.ts";
import type { BrokerClient } from "./broker-client.ts";
import type { ClusterApi } from "./cluster.ts";
import { parseRefresherConfig, type RefresherConfig } from "./config.ts";
import { chooseNamespace, namespacesToRead, plan, planSummary, type NamespaceInfo, type Plan, type ServiceAccountInfo } from "./plan.ts";
import { matchCredentials, registryLabel, registryRequest } from "./registry.ts";
import { desiredSecret, type DesiredSecret } from "./secret.ts";
import { nextState, parseState, type RefresherState } from "./state.ts";
import { exitCodeOf, runResult, statusConfigMap, statusData, type RegistryStatus, type RunResult } from "./status.ts";

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
}

export interface RunOptions {
  configMap?: ConfigMapRef;
  /** Overrides the ConfigMap's `broker-url`. */
  brokerUrl?: string;
  /** Compute and return the plan; write nothing (not even the status). */
  dryRun?: boolean;
  /** Apply every Secret even when the refresher's memory says it is current. */
  resync?: boolean;
  concurrency?: number;
}

export interface RunReport {
  exitCode: 0 | 1;
  result: RunResult;
  plan: Plan;
  apply?: ApplyResult;
  registries: RegistryStatus[];
  /** The earliest credential expiry, for scheduling the next refresh. */
  earliestExpiry?: Date;
}

/** Reads and validates the configuration; a missing or invalid ConfigMap is a `ConfigInvalid` (exit 2). */
export async function loadConfig(cluster: ClusterApi, ref: ConfigMapRef, logger: Logger, brokerUrl?: string): Promise<RefresherConfig> {
  const data = await cluster.readConfigMap(ref.namespace, ref.name);
  const source = `ConfigMap ${ref.namespace}/${ref.name}`;
  if (data === undefined) throw new AcrCredentialError("ConfigInvalid", `${source} does not exist; create it (job/deploy/configmap.yaml is a sample) or pass --config-map`);
  const withOverride = brokerUrl === undefined ? data : { ...Object.fromEntries(Object.entries(data).filter(([key]) => key !== "brokerUrl")), "broker-url": brokerUrl };
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

const codeOf = (error: unknown): string => (error instanceof AcrCredentialError ? error.code : "Internal");

/**
 * Asks the broker for every configured registry (one request, whatever the number of namespaces),
 * then once more with `force` for credentials that expire within the threshold. A credential that
 * has already expired is never written.
 */
export async function fetchCredentials(config: RefresherConfig, broker: BrokerClient, logger: Logger, now: Date): Promise<FetchedCredentials> {
  const requests = config.registries.map((registry) => registryRequest(registry, config.rrsa));
  let response;
  try {
    response = await broker.fetchCredentials({ registries: requests });
  } catch (error) {
    if (error instanceof AcrCredentialError && (error.code === "ConfigInvalid" || error.code === "FileUnreadable")) throw error;
    const brokerError = { code: codeOf(error), message: oneLine(error) };
    logger.error({ code: brokerError.code, err: brokerError.message }, "broker request failed");
    return { secrets: new Map(), registries: config.registries.map((registry) => ({ registry, error: brokerError })), brokerError };
  }
  const matched = matchCredentials(config.registries, response.credentials, response.errors);
  const thresholdMs = config.expiringThresholdSeconds * 1000;
  const expiresSoon = (expiresAt: string | undefined) => expiresAt === undefined || Number.isNaN(Date.parse(expiresAt)) || Date.parse(expiresAt) - now.getTime() <= thresholdMs;

  const renew = config.registries.filter((registry) => {
    const credential = matched.get(registry.secretName)?.credential;
    return credential !== undefined && expiresSoon(credential.expiresAt);
  });
  if (renew.length > 0) {
    try {
      const forced = await broker.fetchCredentials({ registries: renew.map((registry) => registryRequest(registry, config.rrsa)), force: true });
      const rematched = matchCredentials(renew, forced.credentials, []);
      for (const registry of renew) {
        const fresh = rematched.get(registry.secretName)?.credential;
        const old = matched.get(registry.secretName)?.credential;
        if (fresh !== undefined && (old === undefined || Date.parse(fresh.expiresAt) > Date.parse(old.expiresAt))) matched.set(registry.secretName, { credential: fresh });
      }
    } catch (error) {
      logger.warn({ code: codeOf(error), err: oneLine(error), registries: renew.map(registryLabel) }, "forced renewal failed; keeping the credentials in hand");
    }
  }

  const secrets = new Map<string, DesiredSecret>();
  const registries: RegistryStatus[] = [];
  let earliest: number | undefined;
  for (const registry of config.registries) {
    const { credential, error } = matched.get(registry.secretName) ?? {};
    if (credential === undefined) {
      const reported = error === undefined ? { code: "UpstreamError", message: "the broker returned no credential for this registry" } : { code: error.code, message: error.message };
      logger.error({ registry: registryLabel(registry), code: reported.code, err: reported.message }, "no credential for registry");
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
    logger.info({ registry: registryLabel(registry), secret: registry.secretName, expiresAt: credential.expiresAt, stale: credential.stale === true }, "credential received");
  }
  const fetched: FetchedCredentials = { secrets, registries };
  if (earliest !== undefined) fetched.earliestExpiry = new Date(earliest);
  return fetched;
}

/** Lists the ServiceAccounts the plan needs: one cluster-wide paginated list, or one list per named namespace. */
export async function listServiceAccounts(cluster: ClusterApi, config: RefresherConfig, namespaces: readonly NamespaceInfo[], state: RefresherState, concurrency = 8): Promise<ServiceAccountInfo[]> {
  const wanted = namespacesToRead(config, namespaces, state);
  if (wanted.clusterWide) {
    const names = new Set(wanted.names);
    return (await cluster.listServiceAccounts()).filter((sa) => names.has(sa.namespace));
  }
  const limit = pLimit(concurrency);
  const lists = await Promise.all(wanted.names.map((name) => limit(() => cluster.listServiceAccounts(name))));
  return lists.flat();
}

export async function readState(cluster: ClusterApi): Promise<RefresherState> {
  const data = await cluster.readConfigMap(statusConfigMap.namespace, statusConfigMap.name);
  return parseState(data?.["state.json"]);
}

export const statusLabels = { "app.kubernetes.io/managed-by": "acr-credential-broker", "app.kubernetes.io/component": "status" };

/** One run of the refresher (what the CronJob executes). Configuration errors throw `ConfigInvalid` before anything is written. */
export async function refreshOnce(deps: RunDependencies, options: RunOptions = {}): Promise<RunReport> {
  const now = deps.now ?? (() => new Date());
  const started = now();
  const { cluster, logger } = deps;
  const config = await loadConfig(cluster, options.configMap ?? defaultConfigMap, logger, options.brokerUrl);
  const state = await readState(cluster);
  const fetched = await fetchCredentials(config, deps.broker(config.brokerUrl), logger, started);

  const namespaces = await cluster.listNamespaces();
  const serviceAccounts = await listServiceAccounts(cluster, config, namespaces, state);
  const thePlan = plan({ config, secrets: fetched.secrets, namespaces, serviceAccounts, state, resync: options.resync === true });
  const served = namespaces.filter((ns) => chooseNamespace(config, ns).chosen).length;
  logger.info({ namespacesServed: served, ...planSummary(thePlan), dryRun: options.dryRun === true }, "plan computed");

  const report = (applied: ApplyResult): RunReport => {
    const result = runResult({ registries: fetched.registries, result: applied, ...(fetched.brokerError === undefined ? {} : { brokerError: fetched.brokerError }) });
    const out: RunReport = { exitCode: exitCodeOf(result), result, plan: thePlan, apply: applied, registries: fetched.registries };
    if (fetched.earliestExpiry !== undefined) out.earliestExpiry = fetched.earliestExpiry;
    return out;
  };
  if (options.dryRun === true) {
    const nothing: ApplyResult = { outcomes: [], failures: [], conflicts: [], counts: { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 } };
    const dry = report(nothing);
    delete dry.apply;
    return dry;
  }

  const applied = await apply(thePlan, { cluster, secrets: fetched.secrets, serviceAccounts, logger, concurrency: options.concurrency ?? 16 });
  const finished = now();
  const data = statusData({
    finishedAt: finished,
    durationMs: finished.getTime() - started.getTime(),
    mode: "once",
    registries: fetched.registries,
    ...(fetched.brokerError === undefined ? {} : { brokerError: fetched.brokerError }),
    namespacesServed: served,
    result: applied,
    state: nextState(state, applied.outcomes),
  });
  try {
    await cluster.applyConfigMap(statusConfigMap.namespace, statusConfigMap.name, data, statusLabels);
  } catch (error) {
    applied.failures.push({ namespace: statusConfigMap.namespace, kind: "ConfigMap", name: statusConfigMap.name, code: codeOf(error), message: `status not written: ${oneLine(error)}` });
    logger.error({ code: codeOf(error), err: oneLine(error) }, "status ConfigMap not written");
  }
  const out = report(applied);
  logger.info({ result: out.result, ...applied.counts, failures: applied.failures.length, conflicts: applied.conflicts.length, durationMs: finished.getTime() - started.getTime() }, "run finished");
  return out;
}

/** The plan as printed by `--dry-run`: what would be written where, never a credential. */
export function describePlan(report: RunReport): unknown {
  return {
    result: report.result,
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
      ...(ns.applied.length > 0 ? { appliedByOthers: ns.applied.map((sa) => ({ name: sa.name, managers: sa.managers, missing: sa.missing, stale: sa.stale })) } : {}),
    })),
    skipped: report.plan.skipped,
  };
}
