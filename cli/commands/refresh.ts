import { pino } from "pino";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { brokerClient } from "../../job/broker-client.ts";
import { kubernetesCluster } from "../../job/cluster.ts";
import { reportInvalidConfig } from "../../job/events.ts";
import { defaultConfigMap, describePlan, refreshOnce, type ConfigMapRef } from "../../job/run.ts";
import { defaultMetricsAddress, parseMetricsAddress, startMetricsServer } from "../../job/metrics.ts";
import { startWatch } from "../../job/watch.ts";
import type { Command, Options } from "../args.ts";
import { loadKubeConfig } from "../kubeconfig.ts";
import { parseFlags, untilSignal } from "../args.ts";
import { formatDuration, parseGoDuration } from "../../job/duration.ts";

export const defaultTokenFile = "/var/run/secrets/acr-credential-broker/token";
export const defaultStsTokenFile = "/var/run/secrets/acr-credential-broker/sts-token";

const usage = `Usage: acr-credential refresh [--once | --watch] [options]

Fetches short-lived registry credentials from the broker and keeps a kubernetes.io/dockerconfigjson
Secret per registry in every chosen namespace, attached to the chosen ServiceAccounts. Configured by
ConfigMap kube-system/acr-configuration (the aliyun-acr-credential-helper add-on's keys, plus
broker-url). Writes its status to ConfigMap kube-system/acr-credential-status.

Options:
  --once                  run once and exit (default; what the CronJob runs)
  --watch                 keep running: serve new namespaces and ServiceAccounts within seconds,
                          renew credentials before they expire
  --kubeconfig F          kubeconfig file (default: in-cluster config, else $KUBECONFIG or ~/.kube/config)
  --config-map NS/NAME    where the configuration lives (default: ${defaultConfigMap.namespace}/${defaultConfigMap.name})
  --broker-url U          overrides the ConfigMap's broker-url
  --token-file F          projected token with the broker's audience (default: ${defaultTokenFile})
  --sts-token-file F      projected token with audience sts.aliyuncs.com, for RRSA (default: ${defaultStsTokenFile})
  --dry-run               print the plan as JSON and write nothing
  --resync                ask the broker and re-apply every Secret even where the refresher believes
                          it is current
  --schedule-interval D   the CronJob's interval (default 5m, for "*/5 * * * *"): credentials expiring
                          within expiring-threshold plus this are renewed
  --spread-window D       overrides the ConfigMap's spread-window (default 2m): this cluster waits a
                          delay of its own within it before asking the broker
  --no-spread             ask the broker without the delay (same as --spread-window 0)
  --deadline D            the run's time budget, the Job's activeDeadlineSeconds (default 4m): a
                          throttled or unavailable broker is retried until 30 s before it
  --heal-interval D       with --watch: how often every Secret is applied again, so that one deleted
                          by hand comes back (default 5m; 0 turns it off)
  --metrics-addr A        with --watch: serve /metrics, /healthz and /readyz on [HOST]:PORT
                          (default ${defaultMetricsAddress}; 0 switches it off)

Exit codes: 0 everything succeeded (--watch: stopped by SIGTERM or SIGINT), 1 something failed (see
the status ConfigMap; --watch: it could not start), 2 configuration error.`;

/** A `NAMESPACE/NAME` flag (`--config-map` by default). */
export function parseConfigMapRef(value: string | undefined, command = "refresh", flag = "--config-map"): ConfigMapRef {
  if (value === undefined) return defaultConfigMap;
  const match = /^([a-z0-9][-a-z0-9]*)\/([a-z0-9][-a-z0-9.]*)$/.exec(value);
  if (match === null) throw new AcrCredentialError("UsageError", `${flag} must be NAMESPACE/NAME, got '${value}'; see 'acr-credential ${command} --help'`);
  return { namespace: match[1] as string, name: match[2] as string };
}

/** A `--flag 5m` duration in whole seconds, within `[minSeconds, maxSeconds]`. */
function durationFlag(flag: string, value: string | undefined, minSeconds: number, maxSeconds: number): number | undefined {
  if (value === undefined) return undefined;
  const milliseconds = parseGoDuration(value);
  if (milliseconds === undefined || milliseconds < minSeconds * 1000 || milliseconds > maxSeconds * 1000) {
    throw new AcrCredentialError(
      "UsageError",
      `--${flag} must be a duration from ${formatDuration(minSeconds * 1000)} to ${formatDuration(maxSeconds * 1000)} such as 5m or 90s, got '${value}'; see 'acr-credential refresh --help'`,
    );
  }
  return Math.round(milliseconds / 1000);
}

/** The flags, as parsed and as the README's command table lists them. */
const options = {
  once: { type: "boolean" },
  watch: { type: "boolean" },
  kubeconfig: { type: "string" },
  "config-map": { type: "string" },
  "broker-url": { type: "string" },
  "token-file": { type: "string" },
  "sts-token-file": { type: "string" },
  "dry-run": { type: "boolean" },
  resync: { type: "boolean" },
  "schedule-interval": { type: "string" },
  "spread-window": { type: "string" },
  "no-spread": { type: "boolean" },
  deadline: { type: "string" },
  "heal-interval": { type: "string" },
  "metrics-addr": { type: "string" },
} satisfies Options;

export const command: Command = {
  usage,
  options,
  async run(argv) {
    const { values } = parseFlags("refresh", argv, options);
    if (values.once === true && values.watch === true)
      throw new AcrCredentialError("UsageError", "--once and --watch exclude each other; see 'acr-credential refresh --help'");
    if (values.watch === true && values["dry-run"] === true)
      throw new AcrCredentialError("UsageError", "--dry-run works with --once only; see 'acr-credential refresh --help'");
    if (values["no-spread"] === true && values["spread-window"] !== undefined)
      throw new AcrCredentialError("UsageError", "--no-spread and --spread-window exclude each other; see 'acr-credential refresh --help'");
    if (values.watch !== true && values["metrics-addr"] !== undefined)
      throw new AcrCredentialError(
        "UsageError",
        "--metrics-addr works with --watch only (a CronJob run ends before anyone scrapes it); see 'acr-credential refresh --help'",
      );
    const metricsAddress = parseMetricsAddress(values["metrics-addr"] ?? defaultMetricsAddress);
    const intervalSeconds = durationFlag("schedule-interval", values["schedule-interval"], 60, 24 * 3600);
    const spreadWindowSeconds = values["no-spread"] === true ? 0 : durationFlag("spread-window", values["spread-window"], 0, 3600);
    if (values.deadline !== undefined && values.watch === true)
      throw new AcrCredentialError(
        "UsageError",
        "--deadline works with --once only (--watch retries the broker for as long as it runs); see 'acr-credential refresh --help'",
      );
    if (values["heal-interval"] !== undefined && values.watch !== true)
      throw new AcrCredentialError("UsageError", "--heal-interval works with --watch only; see 'acr-credential refresh --help'");
    const deadlineSeconds = durationFlag("deadline", values.deadline, 60, 24 * 3600);
    const healIntervalSeconds = durationFlag("heal-interval", values["heal-interval"], 0, 24 * 3600);
    if (healIntervalSeconds !== undefined && healIntervalSeconds > 0 && healIntervalSeconds < 10)
      throw new AcrCredentialError(
        "UsageError",
        `--heal-interval must be 0 or at least 10s, got '${values["heal-interval"]}'; see 'acr-credential refresh --help'`,
      );
    const configMap = parseConfigMapRef(values["config-map"]);
    const kubeConfig = loadKubeConfig(values.kubeconfig);
    // Logs go to stderr so that `--dry-run` output on stdout stays one JSON document.
    const logger = createLogger("refresher", { destination: pino.destination({ dest: 2, sync: true }) });
    const cluster = kubernetesCluster(kubeConfig);
    const tokenFile = values["token-file"] ?? defaultTokenFile;
    const stsTokenFile = values["sts-token-file"] ?? defaultStsTokenFile;
    const broker = (url: string) => brokerClient({ url, tokenFile, stsTokenFile });
    const brokerUrl = values["broker-url"];
    const common = { configMap, ...(brokerUrl === undefined ? {} : { brokerUrl }), ...(spreadWindowSeconds === undefined ? {} : { spreadWindowSeconds }) };
    /** A refused configuration also becomes an Event on its ConfigMap (not with --dry-run, which writes nothing). */
    const toldOnConfigMap = <T>(task: Promise<T>): Promise<T> =>
      task.catch(async (error: unknown) => {
        if (error instanceof AcrCredentialError && error.code === "ConfigInvalid" && values["dry-run"] !== true)
          await reportInvalidConfig(cluster, logger, configMap, error.message);
        throw error;
      });

    if (values.watch === true) {
      // Nothing the watcher starts may fail unnoticed: a rejection nobody handles ends it with one line
      // and exit code 1 (the Deployment restarts it), never with a stack trace.
      process.on("unhandledRejection", (reason) => {
        logger.fatal({ err: reason }, "internal error; exiting");
        console.error(`acr-credential refresh: internal error: ${oneLine(reason)}`);
        process.exit(1);
      });
      const metrics = metricsAddress === undefined ? undefined : await startMetricsServer(metricsAddress, logger);
      const measured = metrics === undefined ? broker : (url: string) => metrics.measure(broker(url));
      const stop = untilSignal();
      const watcher = startWatch(
        { kubeConfig, cluster, broker: measured, logger, ...(metrics === undefined ? {} : { observeStatus: metrics.observeStatus }) },
        { ...common, ...(healIntervalSeconds === undefined ? {} : { healIntervalMs: healIntervalSeconds * 1000 }) },
      );
      void watcher.ready.then(
        () => metrics?.setReady(),
        () => undefined,
      );
      try {
        try {
          await toldOnConfigMap(Promise.race([watcher.ready, stop]));
        } catch (error) {
          // It could not start (configuration, API server): release what keeps the process alive, then report.
          await watcher.stop().catch(() => undefined);
          throw error;
        }
        const signal = await stop;
        logger.info({ signal }, "stopping");
        await watcher.stop();
      } finally {
        await metrics?.close();
      }
      // Everything is stopped; should a connection the client library reopened still hold the event loop,
      // end within the pod's grace period anyway (unref'd: a clean stop exits at once without it).
      setTimeout(() => {
        logger.warn("connections still open after stopping; exiting");
        process.exit(0);
      }, 5_000).unref();
      return 0;
    }

    const report = await toldOnConfigMap(
      refreshOnce(
        { cluster, broker, logger },
        {
          ...common,
          dryRun: values["dry-run"] === true,
          resync: values.resync === true,
          ...(intervalSeconds === undefined ? {} : { intervalSeconds }),
          ...(deadlineSeconds === undefined ? {} : { deadlineSeconds }),
        },
      ),
    );
    if (values["dry-run"] === true) console.log(JSON.stringify(describePlan(report), null, 2));
    return report.exitCode;
  },
};
