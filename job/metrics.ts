/**
 * The `--watch` refresher's HTTP side (`--metrics-addr`, default `:9102`): Prometheus metrics on
 * `/metrics`, liveness on `/healthz` (answered while the event loop runs) and readiness on
 * `/readyz` (once the first full reconcile has completed). prom-client is imported when the server
 * starts, which only `--watch` does: a CronJob run never loads it.
 *
 * Metrics come from what the refresher reports anyway: the status of a run (the input of the status
 * ConfigMap) and the outcome of each broker call. Labels are registry labels (`cri-xxx@cn-hangzhou`),
 * Secret names, result and error codes; never a credential. docs/refresher.md lists every metric.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AcrCredentialError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { productVersion } from "../shared/version.ts";
import type { BrokerClient } from "./broker-client.ts";
import { registryLabel } from "./registry.ts";
import { runResult, type RunResult, type StatusInput } from "./status.ts";

export const defaultMetricsAddress = ":9102";
const prefix = "acr_credential_refresher_";

export interface MetricsAddress {
  /** Empty: every interface. */
  host: string;
  port: number;
}

/** `:9102`, `127.0.0.1:9102`, `[::1]:9102`; `0` switches the server off (undefined). */
export function parseMetricsAddress(value: string): MetricsAddress | undefined {
  if (value === "0") return undefined;
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (match === null || !Number.isInteger(port) || port > 65535) {
    throw new AcrCredentialError(
      "UsageError",
      `--metrics-addr must be [HOST]:PORT such as :9102 or 127.0.0.1:9102, or 0 to switch metrics off, got '${value}'; see 'acr-credential refresh --help'`,
    );
  }
  return { host: (match[1] as string).replace(/^\[(.*)\]$/, "$1"), port };
}

export type BrokerOutcome = "success" | "refused" | "error";

/** A broker call's outcome: `refused` when the broker answered 4xx (its code kept), `error` when it could not answer properly. */
export function brokerOutcome(error: unknown): { outcome: BrokerOutcome; code: string } {
  if (!(error instanceof AcrCredentialError)) return { outcome: "error", code: "Internal" };
  const status = error.details.status;
  return { outcome: typeof status === "number" && status >= 400 && status < 500 ? "refused" : "error", code: error.code };
}

/** What the gauges say about one status: all of it derived from the status input, nothing else. */
export interface StatusFigures {
  result: RunResult;
  finishedAtSeconds: number;
  namespacesServed: number;
  /** Namespaces with a failure or with a conflict that leaves them unserved (as `counts.namespacesFailed` in one run). */
  namespacesFailed: number;
  conflicts: Record<string, number>;
  expiries: Array<{ registry: string; secret: string; seconds: number }>;
}

export function statusFigures(input: StatusInput): StatusFigures {
  const { failures, conflicts } = input.result;
  const conflictsByKind: Record<string, number> = { exists: 0, replaced: 0, unrecorded: 0, applied: 0 };
  for (const conflict of conflicts) conflictsByKind[conflict.kind] = (conflictsByKind[conflict.kind] ?? 0) + 1;
  const failed = new Set([...failures, ...conflicts.filter((conflict) => conflict.kind !== "unrecorded")].map((problem) => problem.namespace));
  const expiries = input.registries.flatMap((status) => {
    const at = Date.parse(status.expiresAt ?? "");
    return Number.isNaN(at) ? [] : [{ registry: registryLabel(status.registry), secret: status.registry.secretName, seconds: at / 1000 }];
  });
  return {
    result: runResult(input),
    finishedAtSeconds: input.finishedAt.getTime() / 1000,
    namespacesServed: input.namespacesServed,
    namespacesFailed: failed.size,
    conflicts: conflictsByKind,
    expiries,
  };
}

export interface MetricsServer {
  /** `host:port` it listens on (the port chosen when 0 was asked). */
  address: string;
  /** Records the status of a run or reconcile. */
  observeStatus(input: StatusInput): void;
  /** The same client, with each call counted by outcome and timed. */
  measure(client: BrokerClient): BrokerClient;
  /** `/readyz` answers 200 from now on. */
  setReady(): void;
  close(): Promise<void>;
}

const results: RunResult[] = ["Succeeded", "PartiallyFailed", "Failed"];

/** Starts the HTTP server; fails with a `UsageError` naming the address when it cannot listen there. */
export async function startMetricsServer(address: MetricsAddress, logger: Logger, options: { now?: () => number } = {}): Promise<MetricsServer> {
  const now = options.now ?? Date.now;
  const prom = await import("prom-client");
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new prom.Gauge({ name: `${prefix}build_info`, help: "Always 1; the refresher's version as a label.", labelNames: ["version"], registers }).set(
    { version: productVersion },
    1,
  );
  const lastSuccess = new prom.Gauge({
    name: `${prefix}last_success_timestamp_seconds`,
    help: "When a run or reconcile last ended with everything succeeded (Unix time).",
    registers,
  });
  const lastRun = new prom.Gauge({ name: `${prefix}last_run_timestamp_seconds`, help: "When the refresher last reported its status (Unix time).", registers });
  const runResultGauge = new prom.Gauge({
    name: `${prefix}run_result`,
    help: "1 for the result of the latest status (Succeeded, PartiallyFailed, Failed), 0 for the others.",
    labelNames: ["result"],
    registers,
  });
  const expiry = new prom.Gauge({
    name: `${prefix}credential_expiry_timestamp_seconds`,
    help: "When the credential held for each registry expires (Unix time); the last one received while the broker refuses.",
    labelNames: ["registry", "secret"],
    registers,
  });
  const served = new prom.Gauge({ name: `${prefix}namespaces_served`, help: "Namespaces the configuration chooses.", registers });
  const failed = new prom.Gauge({
    name: `${prefix}namespaces_failed`,
    help: "Namespaces with a failed write or a conflict that leaves them unserved.",
    registers,
  });
  const conflicts = new prom.Gauge({
    name: `${prefix}conflicts`,
    help: "Conflicts left to a person, by kind (exists, replaced, unrecorded, applied).",
    labelNames: ["kind"],
    registers,
  });
  const requests = new prom.Counter({
    name: `${prefix}broker_requests_total`,
    help: "Broker calls (retries included) by outcome (success, refused, error) and code.",
    labelNames: ["outcome", "code"],
    registers,
  });
  const duration = new prom.Histogram({
    name: `${prefix}broker_request_duration_seconds`,
    help: "Time of a broker call, retries included, by outcome.",
    labelNames: ["outcome"],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const refusals = new prom.Counter({
    name: `${prefix}broker_refusals_total`,
    help: "Registries for which a broker answer carried an error instead of a credential, by registry and code.",
    labelNames: ["registry", "code"],
    registers,
  });
  // The expiry of a credential still held while the broker refuses to renew it is what an alert needs.
  const expiries = new Map<string, { registry: string; secret: string; seconds: number }>();
  for (const result of results) runResultGauge.set({ result }, 0);
  let ready = false;

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    const path = (request.url ?? "/").split("?")[0];
    const answer = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      response.writeHead(status, { "content-type": type });
      response.end(request.method === "HEAD" ? undefined : body);
    };
    if (request.method !== "GET" && request.method !== "HEAD") return answer(405, "only GET\n");
    if (path === "/healthz") return answer(200, "ok\n");
    if (path === "/readyz") return ready ? answer(200, "ok\n") : answer(503, "not ready: the first reconcile has not completed\n");
    if (path !== "/metrics") return answer(404, "not found: /metrics, /healthz, /readyz\n");
    registry.metrics().then(
      (text) => answer(200, text, registry.contentType),
      (error: unknown) => answer(500, `metrics failed: ${error instanceof Error ? error.message : String(error)}\n`),
    );
  };
  const server = createServer(handle);
  const shown = `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
  await new Promise<void>((resolve, reject) => {
    const refused = (error: NodeJS.ErrnoException) =>
      reject(
        new AcrCredentialError(
          "UsageError",
          `cannot serve metrics on ${shown} (${error.code ?? error.message}); pass another --metrics-addr, or 0 to switch metrics off`,
        ),
      );
    server.once("error", refused);
    server.listen({ port: address.port, ...(address.host === "" ? {} : { host: address.host }) }, () => {
      server.off("error", refused);
      resolve();
    });
  });
  // Once listening, a failing connection must not end the refresher: it is logged.
  server.on("error", (error) => logger.warn({ err: error }, "metrics server error"));
  const bound = server.address() as AddressInfo;
  const listening = `${address.host === "" ? "" : bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}`;
  logger.info({ address: listening }, "serving /metrics, /healthz and /readyz");

  return {
    address: listening,
    observeStatus(input) {
      const figures = statusFigures(input);
      lastRun.set(figures.finishedAtSeconds);
      if (figures.result === "Succeeded") lastSuccess.set(figures.finishedAtSeconds);
      for (const result of results) runResultGauge.set({ result }, result === figures.result ? 1 : 0);
      served.set(figures.namespacesServed);
      failed.set(figures.namespacesFailed);
      for (const [kind, count] of Object.entries(figures.conflicts)) conflicts.set({ kind }, count);
      const configured = new Set(input.registries.map((status) => status.registry.secretName));
      for (const secret of expiries.keys()) if (!configured.has(secret)) expiries.delete(secret);
      for (const entry of figures.expiries) expiries.set(entry.secret, entry);
      expiry.reset();
      for (const entry of expiries.values()) expiry.set({ registry: entry.registry, secret: entry.secret }, entry.seconds);
    },
    measure(client) {
      return {
        async fetchCredentials(query) {
          const started = now();
          let counted: { outcome: BrokerOutcome; code: string } = { outcome: "success", code: "OK" };
          try {
            const response = await client.fetchCredentials(query);
            for (const refused of response.errors) refusals.inc({ registry: registryLabel(refused), code: refused.code });
            return response;
          } catch (error) {
            counted = brokerOutcome(error);
            throw error;
          } finally {
            requests.inc(counted);
            duration.observe({ outcome: counted.outcome }, (now() - started) / 1000);
          }
        },
      };
    },
    setReady() {
      ready = true;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
