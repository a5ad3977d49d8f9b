import { CoreV1Api, makeInformer, type KubeConfig, type KubernetesListObject, type KubernetesObject, type V1Namespace, type V1ServiceAccount } from "@kubernetes/client-node";
import { AcrCredentialError, oneLine } from "../shared/errors.ts";
import { apply, type ApplyResult, type Conflict, type Failure } from "./apply.ts";
import { formatDuration } from "./duration.ts";
import { namespaceInfo, serviceAccountInfo } from "./cluster.ts";
import type { RefresherConfig } from "./config.ts";
import { chooseNamespace, plan, planSummary } from "./plan.ts";
import { defaultConfigMap, fetchCredentials, loadConfig, readState, statusLabels, type ConfigMapRef, type FetchedCredentials, type RunDependencies } from "./run.ts";
import { clusterIdentity, spreadDelayMs } from "./spread.ts";
import { nextState, type RefresherState } from "./state.ts";
import { eventRecorder, recordRunEvents, reportInvalidConfig } from "./events.ts";
import { statusConfigMap, statusData, type StatusInput } from "./status.ts";

/**
 * `--watch`: a long-running refresher. Informers on namespaces and ServiceAccounts serve a new
 * namespace or ServiceAccount within moments of its creation, from credentials held in memory; the
 * credentials themselves are renewed on a timer set from their expiry minus the threshold, not on
 * a fixed period. The ConfigMap is re-read every minute and a change triggers a full refresh.
 */

/** What a run needs, plus the kubeconfig the informers watch with. */
export interface WatchDependencies extends RunDependencies {
  kubeConfig: KubeConfig;
  /** Told every status the watcher reports (the metrics read it). */
  observeStatus?: (input: StatusInput) => void;
}

export interface WatchOptions {
  configMap?: ConfigMapRef;
  brokerUrl?: string;
  concurrency?: number;
  /** How often the ConfigMap is re-read. */
  configPollMs?: number;
  /** Quiet time after an event before the affected namespaces are reconciled (events come in bursts). */
  debounceMs?: number;
  /** Minimum spacing of status ConfigMap writes. */
  statusIntervalMs?: number;
  /** Overrides the ConfigMap's `spread-window`: renewals wait this cluster's delay within it. */
  spreadWindowSeconds?: number;
}

export interface Watcher {
  /** Resolves after the initial full reconcile. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/** Bounds of the credential renewal timer: never busier than every 30 s, never idle for more than an hour. */
const minRefreshMs = 30_000;
const maxRefreshMs = 3_600_000;

/**
 * When to ask the broker again: the threshold before the earliest expiry, then this cluster's spread
 * delay (at most half the threshold, so the credential is always renewed well before it lapses);
 * while some registry has no credential, sooner, backing off from 30 s to 5 min; always between 30 s
 * and an hour. The delay comes after the threshold, not before it: by then the broker's cache renews
 * the credential for an unforced request, which the whole fleet shares.
 */
export function refreshDelayMs(input: { complete: boolean; earliestExpiry: Date | undefined; thresholdSeconds: number; failures: number; now: Date; spreadMs?: number }): number {
  let wait: number;
  if (!input.complete) {
    wait = Math.min(minRefreshMs * 2 ** Math.min(Math.max(input.failures - 1, 0), 4), 5 * 60_000);
  } else {
    const expiry = input.earliestExpiry?.getTime() ?? input.now.getTime() + maxRefreshMs;
    wait = expiry - input.thresholdSeconds * 1000 + Math.min(input.spreadMs ?? 0, (input.thresholdSeconds * 1000) / 2) - input.now.getTime();
  }
  return Math.min(Math.max(wait, minRefreshMs), maxRefreshMs);
}

type ListFunction<T extends KubernetesObject> = () => Promise<KubernetesListObject<T>>;

/** Paginates an informer's initial list so that 2,000 namespaces do not arrive as one response. */
function paginated<T extends KubernetesObject>(page: (continueToken: string | undefined) => Promise<KubernetesListObject<T>>): ListFunction<T> {
  return async () => {
    const items: T[] = [];
    let token: string | undefined;
    let resourceVersion: string | undefined;
    let list: KubernetesListObject<T>;
    do {
      list = await page(token);
      items.push(...list.items);
      resourceVersion ??= list.metadata?.resourceVersion;
      token = list.metadata?._continue || undefined;
    } while (token !== undefined);
    return { ...list, items, metadata: { ...list.metadata, ...(resourceVersion === undefined ? {} : { resourceVersion }) } };
  };
}

export function startWatch(deps: WatchDependencies, options: WatchOptions = {}): Watcher {
  const { cluster, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const configMap = options.configMap ?? defaultConfigMap;
  const core = deps.kubeConfig.makeApiClient(CoreV1Api);
  const namespaces = makeInformer<V1Namespace>(deps.kubeConfig, "/api/v1/namespaces", paginated((_continue) => core.listNamespace({ limit: 500, _continue })));
  const accounts = makeInformer<V1ServiceAccount>(deps.kubeConfig, "/api/v1/serviceaccounts", paginated((_continue) => core.listServiceAccountForAllNamespaces({ limit: 500, _continue })));

  let stopped = false;
  let config: RefresherConfig;
  let configText = "";
  let state: RefresherState;
  let fetched: FetchedCredentials;
  const since = now();
  const totals = { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 };
  const failures = new Map<string, Failure[]>();
  const conflicts = new Map<string, Conflict[]>();
  let missingNamespaces: string[] = [];
  const dirty = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  let queue: Promise<void> = Promise.resolve();
  let debounceTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let statusTimer: NodeJS.Timeout | undefined;
  let lastStatusAt = 0;
  let brokerFailures = 0;
  let nextRefreshAt: Date | undefined;
  // One for the watcher's life: an Event observed again is counted in its series, not re-sent.
  const events = eventRecorder(cluster, logger, { now });
  const spreadWindowMs = () => (options.spreadWindowSeconds ?? config.spreadWindowSeconds) * 1000;
  const spreadMs = () => spreadDelayMs(clusterIdentity(namespaces.list().map(namespaceInfo)), spreadWindowMs());

  const later = (ms: number, task: () => void): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) task();
    }, ms);
    timer.unref?.();
    timers.add(timer);
    return timer;
  };
  /** Every reconcile runs alone, in order, so the plan always sees the state the previous one left. */
  const enqueue = (task: () => Promise<void>): Promise<void> => {
    queue = queue.then(task).catch((error) => logger.error({ err: oneLine(error) }, "reconcile failed"));
    return queue;
  };

  async function reconcile(scope: ReadonlySet<string> | undefined): Promise<void> {
    const nsList = namespaces.list().map(namespaceInfo);
    const saList = accounts.list().map(serviceAccountInfo);
    const thePlan = plan({ config, secrets: fetched.secrets, namespaces: nsList, serviceAccounts: saList, state, ...(scope === undefined ? {} : { scope }) });
    if (thePlan.namespaces.length === 0 && thePlan.forget.length === 0 && scope !== undefined) return;
    const result: ApplyResult = await apply(thePlan, { cluster, secrets: fetched.secrets, serviceAccounts: saList, logger, concurrency: options.concurrency ?? 16, events });
    state = nextState(state, result.outcomes);
    for (const key of Object.keys(totals) as Array<keyof typeof totals>) totals[key] += result.counts[key];
    // Failures describe the latest attempt per namespace: a reconcile replaces those of its scope.
    if (scope === undefined) {
      failures.clear();
      conflicts.clear();
      missingNamespaces = result.missingNamespaces ?? [];
    } else {
      for (const name of scope) {
        failures.delete(name);
        conflicts.delete(name);
      }
    }
    for (const failure of result.failures) failures.set(failure.namespace, [...(failures.get(failure.namespace) ?? []), failure]);
    for (const conflict of result.conflicts) conflicts.set(conflict.namespace, [...(conflicts.get(conflict.namespace) ?? []), conflict]);
    logger.info({ scope: scope === undefined ? "all" : [...scope], ...planSummary(thePlan), ...result.counts }, "reconciled");
    scheduleStatus();
  }

  function scheduleStatus(): void {
    if (statusTimer !== undefined) return;
    const wait = Math.max(0, lastStatusAt + (options.statusIntervalMs ?? 10_000) - Date.now());
    statusTimer = later(wait, () => {
      statusTimer = undefined;
      void enqueue(writeStatus);
    });
  }

  async function writeStatus(): Promise<void> {
    lastStatusAt = Date.now();
    const finished = now();
    const served = namespaces.list().map(namespaceInfo).filter((ns) => chooseNamespace(config, ns).chosen).length;
    const input: StatusInput = {
      finishedAt: finished,
      durationMs: finished.getTime() - since.getTime(),
      mode: "watch",
      registries: fetched.registries,
      ...(fetched.brokerError === undefined ? {} : { brokerError: fetched.brokerError }),
      namespacesServed: served,
      result: { outcomes: [], failures: [...failures.values()].flat(), conflicts: [...conflicts.values()].flat(), counts: { ...totals }, missingNamespaces },
      state,
    };
    const data = statusData(input);
    deps.observeStatus?.(input);
    await recordRunEvents(events, cluster, input, configMap);
    data.since = since.toISOString();
    if (nextRefreshAt !== undefined) data["next-broker-call"] = nextRefreshAt.toISOString();
    data["spread-delay"] = `${formatDuration(spreadMs())} (window ${formatDuration(spreadWindowMs())})`;
    try {
      await cluster.applyConfigMap(statusConfigMap.namespace, statusConfigMap.name, data, statusLabels);
    } catch (error) {
      logger.error({ err: oneLine(error) }, "status ConfigMap not written");
    }
  }

  function scheduleRefresh(): void {
    if (refreshTimer !== undefined) clearTimeout(refreshTimer);
    const spread = spreadMs();
    const wait = refreshDelayMs({ complete: fetched.brokerError === undefined && fetched.secrets.size === config.registries.length, earliestExpiry: fetched.earliestExpiry, thresholdSeconds: config.expiringThresholdSeconds, failures: brokerFailures, now: now(), spreadMs: spread });
    nextRefreshAt = new Date(now().getTime() + wait);
    logger.info({ nextRefreshAt: nextRefreshAt.toISOString(), spreadDelayMs: spread }, "next credential refresh scheduled");
    refreshTimer = later(wait, () => void enqueue(refreshAll));
  }

  /** Fetches credentials (one broker call for all namespaces) and reconciles everything. */
  async function refreshAll(): Promise<void> {
    fetched = await fetchCredentials(config, deps.broker(config.brokerUrl), logger, now());
    brokerFailures = fetched.secrets.size === config.registries.length ? 0 : brokerFailures + 1;
    await reconcile(undefined);
    scheduleRefresh();
  }

  async function pollConfig(): Promise<void> {
    try {
      const data = await cluster.readConfigMap(configMap.namespace, configMap.name);
      const text = JSON.stringify(data ?? null);
      if (text !== configText) {
        config = await loadConfig(cluster, configMap, logger, options.brokerUrl);
        configText = text;
        logger.info({ configMap: `${configMap.namespace}/${configMap.name}` }, "configuration changed; refreshing everything");
        await refreshAll();
      }
    } catch (error) {
      logger.error({ err: oneLine(error) }, "configuration not reloaded; keeping the previous one");
      if (error instanceof AcrCredentialError && error.code === "ConfigInvalid") await reportInvalidConfig(cluster, logger, configMap, error.message, events);
    }
    later(options.configPollMs ?? 60_000, () => void enqueue(pollConfig));
  }

  function markDirty(namespace: string | undefined): void {
    if (namespace === undefined || namespace === "" || stopped) return;
    dirty.add(namespace);
    if (debounceTimer !== undefined) return;
    debounceTimer = later(options.debounceMs ?? 150, () => {
      debounceTimer = undefined;
      const scope = new Set(dirty);
      dirty.clear();
      void enqueue(() => reconcile(scope));
    });
  }

  function restartOnError(name: string, informer: { start(): Promise<void> }) {
    return (error: unknown) => {
      if (stopped) return;
      logger.warn({ informer: name, err: oneLine(error) }, "watch interrupted; restarting in 5s");
      later(5000, () => void informer.start().catch((e) => logger.error({ informer: name, err: oneLine(e) }, "watch restart failed")));
    };
  }

  const ready = (async () => {
    const initialData = await cluster.readConfigMap(configMap.namespace, configMap.name);
    config = await loadConfig(cluster, configMap, logger, options.brokerUrl);
    configText = JSON.stringify(initialData ?? null);
    state = await readState(cluster);
    fetched = await fetchCredentials(config, deps.broker(config.brokerUrl), logger, now());
    brokerFailures = fetched.secrets.size === config.registries.length ? 0 : 1;

    namespaces.on("error", restartOnError("namespaces", namespaces));
    accounts.on("error", restartOnError("serviceaccounts", accounts));
    await namespaces.start();
    await accounts.start();
    // Registered after the initial lists: those objects are served by the full reconcile below.
    namespaces.on("add", (ns) => markDirty(ns.metadata?.name));
    namespaces.on("update", (ns) => markDirty(ns.metadata?.name));
    accounts.on("add", (sa) => markDirty(sa.metadata?.namespace));
    accounts.on("update", (sa) => markDirty(sa.metadata?.namespace));

    await enqueue(async () => {
      await reconcile(undefined);
      scheduleRefresh();
    });
    later(options.configPollMs ?? 60_000, () => void enqueue(pollConfig));
    logger.info({ namespaces: namespaces.list().length, serviceAccounts: accounts.list().length }, "watching namespaces and ServiceAccounts");
  })();

  return {
    ready,
    async stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.allSettled([namespaces.stop(), accounts.stop()]);
      await ready.catch(() => undefined);
      await queue;
      if (config !== undefined && fetched !== undefined) await writeStatus();
    },
  };
}
