/**
 * Asking the broker for every configured registry, as both modes do: one request for all
 * namespaces; a scheduled renewal asks for credentials valid long enough (`minValiditySeconds`), a
 * resync forces, an older broker is asked in two steps. What comes back becomes the Secrets to write
 * and the status per registry; a credential that has already expired is never written.
 */
import { type Credential, type EntryError } from "../shared/broker-api.ts";
import { AcrCredentialError, codeOf, oneLine } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { BrokerClient, BrokerRetry, CredentialsQuery } from "./broker-client.ts";
import type { RefresherConfig } from "./config.ts";
import { matchCredentials, registryLabel, registryRequest, type RegistryEntry } from "./registry.ts";
import { desiredSecret, type DesiredSecret } from "./secret.ts";
import type { RegistryStatus } from "./status.ts";

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
  /** Told before each wait while the broker is retried (the wait is logged here). */
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
function retryOptions(options: FetchOptions, force: boolean, logger: Logger): Pick<CredentialsQuery, "deadlineAt" | "onRetry" | "signal"> {
  const { onRetry } = options;
  return {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(force || options.deadlineAt === undefined ? {} : { deadlineAt: options.deadlineAt }),
    ...(force || onRetry === undefined
      ? {}
      : {
          onRetry: (retry: BrokerRetry) => {
            logger.warn({ code: retry.code, err: retry, attempts: retry.attempts, delayMs: retry.delayMs }, "broker busy or unreachable; retrying");
            return onRetry(retry);
          },
        }),
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
        ...retryOptions(options, query.force === true, logger),
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
      ...retryOptions(retrying, force, logger),
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
