/**
 * Does this run need the broker, and why. A credential lives an hour and is renewed only near its
 * expiry, so most runs bring nothing new from the broker; they ask only when something needs a
 * credential: one in hand expires within `expiring-threshold` plus one schedule interval (so it never
 * enters the threshold unrenewed, even when a run is missed), a chosen namespace or ServiceAccount
 * lacks a Secret, the configuration that shapes credentials changed, the refresher's memory is
 * missing or unreadable, the run before was cut off while writing Secrets, or a person asked (`--resync`, or the resync annotation). Pure: the caller
 * reads the status ConfigMap, the namespaces and the ServiceAccounts. See docs/refresher.md.
 */
import { createHash } from "node:crypto";
import { stringify } from "yaml";
import { z } from "zod";
import { selects, type RefresherConfig } from "./config.ts";
import { formatDuration } from "./duration.ts";
import { chooseNamespace, optedOut, type NamespaceInfo, type ServiceAccountInfo } from "./plan.ts";
import { registryLabel, registryRequest, type RegistryEntry } from "./registry.ts";
import { secretUid, shortUid, type RefresherState } from "./state.ts";

/** Status ConfigMap key of the memory below. */
export const brokerMemoryKey = "broker.json";

/** Annotation on the configuration ConfigMap: a new value forces one run to ask the broker and re-apply every Secret. */
export const resyncAnnotation = "acr-credential-broker/resync";

/** What the refresher remembers of its last broker answer, kept in the status ConfigMap. */
export const brokerMemorySchema = z.object({
  version: z.literal(1),
  /** `credentialConfigHash` of the configuration the credentials were fetched for. */
  configHash: z.string(),
  /** Expiry of the credential in hand, by Secret name; absent when the last answer for it was an error. */
  expiries: z.record(z.string(), z.string()),
  /** The value of the resync annotation last acted on. */
  resync: z.string().optional(),
  lastCallAt: z.string().optional(),
  /** Set while a run writes new credentials; found set, it means that run was cut off midway. */
  unfinished: z.boolean().optional(),
});
export type BrokerMemory = z.infer<typeof brokerMemorySchema>;

/** Parses the memory; missing or unreadable yields `undefined`, which makes the next run ask. */
export function parseBrokerMemory(text: string | undefined): BrokerMemory | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  try {
    const parsed = brokerMemorySchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A hash of everything in the configuration that shapes a credential or its Secret: the broker, the
 * registries as requested (instances, regions, domains, roles, durations, RRSA) and the notify e-mail
 * annotation. Namespace and ServiceAccount choices are not in it: a newly chosen one is seen directly.
 */
export function credentialConfigHash(config: RefresherConfig): string {
  const shape = [
    config.brokerUrl,
    config.rrsa,
    config.notifyEmail ?? "",
    config.registries.map((registry) => [registry.secretName, registryRequest(registry, config.rrsa)]),
  ];
  return createHash("sha256").update(JSON.stringify(shape)).digest("hex").slice(0, 16);
}

export type NeedCode =
  | "resync"
  | "secret-missing"
  | "memory-missing"
  | "interrupted"
  | "config-changed"
  | "no-credential"
  | "expiring"
  | "namespace-lacks-secret"
  | "secret-uid-unknown"
  | "service-account-lacks-secret";

export interface NeedReason {
  code: NeedCode;
  /** What it concerns (a registry, `namespace`, `namespace/serviceaccount`), when it concerns one thing. */
  subject?: string;
}

export interface NeedInput {
  config: RefresherConfig;
  memory: BrokerMemory | undefined;
  state: RefresherState;
  namespaces: readonly NamespaceInfo[];
  /** ServiceAccounts of (at least) the chosen namespaces. */
  serviceAccounts: readonly ServiceAccountInfo[];
  now: Date;
  /** The schedule's interval (5 min for `*\/5`); 0 when the caller renews on a timer of its own. */
  intervalSeconds: number;
  /** `--resync` was given. */
  resync: boolean;
  /** The resync annotation's current value on the configuration ConfigMap. */
  resyncAnnotation?: string | undefined;
  /** The refresher's Secrets the kubelet recently could not find, by namespace (pull-secret-events.ts). */
  missingSecrets?: ReadonlyMap<string, ReadonlySet<string>>;
}

export interface BrokerNeed {
  call: boolean;
  reasons: NeedReason[];
  /** Registries (by Secret name) whose credential in hand expires within the window: asked with `force`. */
  renew: Set<string>;
  /** Renewal window: credentials expiring within this many seconds are renewed. */
  renewWithinSeconds: number;
  /** Apply every Secret even where the state says it is current (`--resync` or the annotation). */
  resync: boolean;
  /** When a run must ask next, from the credentials in hand; `now` when the next run must ask. */
  nextCallDueAt: Date;
}

/** At most this many reasons of one kind are listed (a new cluster-wide selector can add 2,000 namespaces). */
const reasonsPerCode = 5;

/** Seconds before expiry at which a credential is renewed: the threshold, plus one interval so that no run in between finds it inside the threshold. */
export const renewalWindowSeconds = (config: RefresherConfig, intervalSeconds: number): number =>
  config.expiringThresholdSeconds + Math.max(0, intervalSeconds);

/** When the next run must ask the broker: the earliest expiry in hand minus the renewal window; `now` when a registry has none. */
export function nextCallDue(registries: readonly RegistryEntry[], expiries: Readonly<Record<string, string>>, windowSeconds: number, now: Date): Date {
  let due = Number.POSITIVE_INFINITY;
  for (const registry of registries) {
    const expiresAt = Date.parse(expiries[registry.secretName] ?? "");
    if (Number.isNaN(expiresAt)) return now;
    due = Math.min(due, expiresAt - windowSeconds * 1000);
  }
  return due === Number.POSITIVE_INFINITY || due <= now.getTime() ? now : new Date(due);
}

/** Decides whether this run asks the broker; see the module comment for the rules. */
export function brokerNeed(input: NeedInput): BrokerNeed {
  const { config, memory, state, now } = input;
  const reasons: NeedReason[] = [];
  const counts = new Map<NeedCode, number>();
  const add = (code: NeedCode, subject?: string) => {
    const count = counts.get(code) ?? 0;
    counts.set(code, count + 1);
    if (count < reasonsPerCode) reasons.push(subject === undefined ? { code } : { code, subject });
  };
  const window = renewalWindowSeconds(config, input.intervalSeconds);
  const renew = new Set<string>();

  const annotationResync = input.resyncAnnotation !== undefined && input.resyncAnnotation !== "" && input.resyncAnnotation !== memory?.resync;
  if (input.resync) add("resync", "--resync");
  if (annotationResync) add("resync", resyncAnnotation);
  if (memory === undefined) add("memory-missing");
  // The cut-off run rewrote some Secrets that the state does not know about: ask, and rewrite them all.
  else if (memory.unfinished === true) add("interrupted");
  else if (memory.configHash !== credentialConfigHash(config)) add("config-changed");

  const expiries = memory?.expiries ?? {};
  for (const registry of config.registries) {
    const expiresAt = Date.parse(expiries[registry.secretName] ?? "");
    if (Number.isNaN(expiresAt)) {
      if (memory !== undefined) add("no-credential", registryLabel(registry));
    } else if (expiresAt - now.getTime() <= window * 1000) {
      renew.add(registry.secretName);
      add("expiring", registryLabel(registry));
    }
  }

  // The refresher never reads Secrets: a Secret is known to be in place only when the state says so.
  const configured = config.registries.map((registry) => registry.secretName);
  const chosen = new Set<string>();
  for (const ns of input.namespaces) {
    if (!chooseNamespace(config, ns).chosen) continue;
    chosen.add(ns.name);
    const uid = shortUid(ns.uid);
    // Deleted by hand: the state still says it is there, the kubelet says it is not.
    if (configured.some((secret) => input.missingSecrets?.get(ns.name)?.has(secret) === true)) add("secret-missing", ns.name);
    else if (configured.some((secret) => state.secrets[secret]?.current[ns.name] !== uid)) add("namespace-lacks-secret", ns.name);
    // Written before the refresher recorded Secret uids: one apply (with a credential) learns it (decision 005).
    else if (configured.some((secret) => secretUid(state, secret, ns.name, ns.uid) === undefined)) add("secret-uid-unknown", ns.name);
  }
  for (const sa of input.serviceAccounts) {
    // Opted out, or its list applied by another manager: the plan leaves it alone, so it needs nothing.
    if (!chosen.has(sa.namespace) || !selects(config.serviceAccount, sa.name) || optedOut(sa) || sa.imagePullSecretsAppliers !== undefined) continue;
    const listed = new Set(sa.imagePullSecrets.map((entry) => entry.name ?? ""));
    if (configured.some((secret) => !listed.has(secret))) add("service-account-lacks-secret", `${sa.namespace}/${sa.name}`);
  }

  const call = reasons.length > 0;
  return {
    call,
    reasons,
    renew,
    renewWithinSeconds: window,
    resync: input.resync || annotationResync,
    nextCallDueAt: call ? now : nextCallDue(config.registries, expiries, window, now),
  };
}

/** A reason as one line for logs and the status, e.g. `expiring: cri-abc@cn-hangzhou`. */
export const describeReason = (reason: NeedReason): string => (reason.subject === undefined ? reason.code : `${reason.code}: ${reason.subject}`);

/** The memory after a run that asked: expiries of the credentials received, the configuration they were fetched for. */
export function rememberAnswer(
  config: RefresherConfig,
  received: ReadonlyArray<{ registry: RegistryEntry; expiresAt?: string; error?: unknown }>,
  now: Date,
  resync: string | undefined,
): BrokerMemory {
  const expiries: Record<string, string> = {};
  for (const status of received) if (status.error === undefined && status.expiresAt !== undefined) expiries[status.registry.secretName] = status.expiresAt;
  const memory: BrokerMemory = { version: 1, configHash: credentialConfigHash(config), expiries, lastCallAt: now.toISOString() };
  if (resync !== undefined && resync !== "") memory.resync = resync;
  return memory;
}

export interface BrokerStatusInput {
  need: Pick<BrokerNeed, "call" | "reasons">;
  memory: BrokerMemory;
  nextCallDueAt: Date;
  spreadDelayMs: number;
  spreadWindowMs: number;
}

/** The status ConfigMap keys about broker calls: whether this run asked and why, the spread delay, when the next call is due. */
export function brokerStatusData(input: BrokerStatusInput): Record<string, string> {
  const data: Record<string, string> = {
    "broker-call": input.need.call ? stringify({ asked: true, reasons: input.need.reasons.map(describeReason) }) : stringify({ asked: false }),
    "next-broker-call": input.nextCallDueAt.toISOString(),
    "spread-delay": `${formatDuration(input.spreadDelayMs)} (window ${formatDuration(input.spreadWindowMs)})`,
    [brokerMemoryKey]: JSON.stringify(input.memory),
  };
  return data;
}
