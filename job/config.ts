import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { AcrCredentialError } from "../shared/errors.ts";
import { parseGoDuration } from "./duration.ts";
import { normaliseDomains, registryEntrySchema, secretNameFor, type RegistryEntry } from "./registry.ts";
import { defaultSpreadWindowSeconds } from "./spread.ts";

/**
 * The refresher's configuration, read from the `data` of ConfigMap `kube-system/acr-configuration`
 * exactly as the aliyun-acr-credential-helper add-on writes it (both its kebab-case and its
 * managed-edition camelCase keys), plus the refresher's own `broker-url` and `exclude-namespace`.
 */

/** `all` (or `*`), or a list of names and `*`/`?` globs. */
export const selectorSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("all") }),
  z.object({ kind: z.literal("list"), patterns: z.array(z.string()).min(1) }),
]);
export type Selector = z.infer<typeof selectorSchema>;

export const refresherConfigSchema = z.object({
  brokerUrl: z.url(),
  watchNamespace: selectorSchema,
  excludeNamespaces: z.array(z.string()),
  serviceAccount: selectorSchema,
  expiringThresholdSeconds: z.number().int().nonnegative(),
  /** Window of the per-cluster delay before asking the broker (fleet spread); 0 turns it off. */
  spreadWindowSeconds: z.number().int().nonnegative(),
  notifyEmail: z.string().optional(),
  rrsa: z.boolean(),
  registries: z.array(registryEntrySchema).min(1),
});
export type RefresherConfig = z.infer<typeof refresherConfigSchema>;

export interface ParsedConfig {
  config: RefresherConfig;
  /** Keys that were ignored or look like mistakes; never contains a value that could be secret. */
  warnings: string[];
}

/** The setting names, each with the spellings the add-on (self-managed and managed) accepts. */
const settings = {
  serviceAccount: ["service-account", "serviceAccount"],
  watchNamespace: ["watch-namespace", "watchNamespace"],
  expiringThreshold: ["expiring-threshold", "expiringThreshold"],
  notifyEmail: ["notify-email", "notifyEmail"],
  registryInfo: ["acr-registry-info", "AcrInstanceInfo"],
  rrsa: ["rrsa"],
  brokerUrl: ["broker-url", "brokerUrl"],
  excludeNamespace: ["exclude-namespace", "excludeNamespace"],
  defaultRegionId: ["default-region-id", "defaultRegionId"],
  spreadWindow: ["spread-window", "spreadWindow"],
} as const;
type Setting = keyof typeof settings;

/** Add-on settings that have no meaning here: the broker holds the identity and there is no webhook. */
const ignoredAddonKeys = new Set(["acr-api-version", "acrApiVersion", "webhook-configuration", "webhookConfiguration", "acr-registry", "token-mode", "tokenMode"]);

export const defaultExcludedNamespaces = ["kube-system", "kube-public", "kube-node-lease"];
const defaultExpiringThresholdSeconds = 15 * 60;

const dns1123Label = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const dns1123Subdomain = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const globOf = (valid: RegExp) => (pattern: string) => valid.test(pattern.replace(/[*?]/g, "a"));
const regionPattern = /^[a-z0-9]+(-[a-z0-9]+)+$/;
const instancePattern = /^cri-[A-Za-z0-9]{1,60}$/;
const domainPattern = /^(?=.{1,253}(:|$))[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:\d{1,5})?$/;
const ramArnPattern = /^acs:ram::[^:\s]*:\S+$/;

class Problems {
  readonly messages: string[] = [];
  add(key: string, message: string): void {
    this.messages.push(`key '${key}': ${message}`);
  }
}

/** Reads one setting under either spelling; both present with different values is a mistake worth naming. */
function read(data: Readonly<Record<string, string>>, setting: Setting, problems: Problems): { key: string; value: string } | undefined {
  const present = settings[setting].filter((key) => Object.hasOwn(data, key));
  if (present.length === 0) return undefined;
  const [first, second] = present as [string, string | undefined];
  if (second !== undefined && data[first] !== data[second]) {
    problems.add(first, `is also set as '${second}' with a different value; keep one spelling`);
  }
  return { key: first, value: data[first] as string };
}

function splitList(value: string): string[] {
  return value.split(/[,\s]+/).map((item) => item.trim()).filter((item) => item !== "");
}

function parseSelector(key: string, value: string | undefined, allWords: readonly string[], valid: (pattern: string) => boolean, what: string, problems: Problems): Selector {
  const items = splitList(value ?? "");
  if (items.length === 0) return { kind: "list", patterns: ["default"] };
  if (items.some((item) => allWords.includes(item))) {
    if (items.length > 1) problems.add(key, `'${items.join(",")}' mixes '${allWords.join("' or '")}' with names; use one or the other`);
    return { kind: "all" };
  }
  for (const item of items) if (!valid(item)) problems.add(key, `'${item}' is not a ${what} (lower-case letters, digits and '-', optionally with '*' or '?')`);
  return { kind: "list", patterns: [...new Set(items)] };
}

function parseBoolean(value: unknown): boolean | undefined {
  if (typeof value === "boolean") return value;
  if (typeof value !== "string") return undefined;
  const word = value.trim().toLowerCase();
  if (["true", "yes", "on", "enable", "enabled", "1"].includes(word)) return true;
  if (["false", "no", "off", "disable", "disabled", "0", ""].includes(word)) return false;
  return undefined;
}

/** `rrsa` comes as the add-on's block (`enable: true`), or as a bare boolean word. */
function parseRrsa(key: string, value: string, problems: Problems): boolean {
  let document: unknown;
  try {
    document = parseYaml(value);
  } catch {
    document = value;
  }
  if (document === null || document === undefined) return false;
  if (typeof document === "object" && !Array.isArray(document)) {
    const fields = document as Record<string, unknown>;
    const enable = Object.entries(fields).find(([name]) => name.toLowerCase() === "enable" || name.toLowerCase() === "enabled");
    const parsed = enable === undefined ? undefined : parseBoolean(typeof enable[1] === "boolean" ? enable[1] : String(enable[1]));
    if (parsed === undefined) problems.add(key, "expected 'enable: true' or 'enable: false'");
    return parsed ?? false;
  }
  const parsed = parseBoolean(typeof document === "boolean" ? document : String(document));
  if (parsed === undefined) problems.add(key, "expected 'enable: true' or 'enable: false'");
  return parsed ?? false;
}

/** Item fields of `acr-registry-info`, matched without regard to case (`instanceId` and `instanceID` both occur). */
const itemFields: Record<string, keyof RawItem> = {
  instanceid: "instanceId",
  regionid: "regionId",
  domains: "domains",
  assumerolearn: "assumeRoleArn",
  expireduration: "expireDuration",
  rrsarolearn: "rrsaRoleArn",
  rrsaoidcproviderrolearn: "rrsaOidcProviderArn",
  rrsaoidcproviderarn: "rrsaOidcProviderArn",
};
const secretItemFields = new Set(["customaccesskey", "customaccesskeysecret"]);

interface RawItem {
  instanceId?: unknown;
  regionId?: unknown;
  domains?: unknown;
  assumeRoleArn?: unknown;
  expireDuration?: unknown;
  rrsaRoleArn?: unknown;
  rrsaOidcProviderArn?: unknown;
}

/** An empty string is how the add-on's template says "not set". */
function optionalText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const text = String(value).trim();
  return text === "" ? undefined : text;
}

function parseRegistryItem(key: string, index: number, item: unknown, defaultRegionId: string | undefined, rrsa: boolean, problems: Problems, warnings: string[]): RegistryEntry | undefined {
  const at = `${key}[${index}]`;
  if (item === null || typeof item !== "object" || Array.isArray(item)) {
    problems.add(at, "expected a mapping with instanceId, regionId, domains, ...");
    return undefined;
  }
  const raw: RawItem = {};
  for (const [name, value] of Object.entries(item as Record<string, unknown>)) {
    const field = itemFields[name.toLowerCase()];
    if (field !== undefined) raw[field] = value;
    else if (secretItemFields.has(name.toLowerCase())) warnings.push(`key '${at}.${name}' is ignored: the broker holds the cloud identity, so remove the access key from the ConfigMap`);
    else warnings.push(`key '${at}.${name}' is not a known registry field and is ignored`);
  }
  const before = problems.messages.length;
  const instanceId = optionalText(raw.instanceId);
  if (instanceId !== undefined && !instancePattern.test(instanceId)) problems.add(`${at}.instanceId`, `'${instanceId}' is not an instance id such as cri-xxxxxxxx`);
  const regionId = optionalText(raw.regionId) ?? defaultRegionId;
  if (regionId === undefined) problems.add(`${at}.regionId`, "is required (the refresher cannot tell the cluster's region); set it, e.g. regionId: cn-hangzhou, or set 'default-region-id'");
  else if (!regionPattern.test(regionId)) problems.add(`${at}.regionId`, `'${regionId}' is not a region id such as cn-hangzhou`);

  let domains: string[] = [];
  if (Array.isArray(raw.domains)) domains = raw.domains.map((domain) => String(domain));
  else if (optionalText(raw.domains) !== undefined) domains = splitList(String(raw.domains));
  else if (raw.domains !== undefined && raw.domains !== null && typeof raw.domains !== "string") problems.add(`${at}.domains`, "expected a comma-separated string or a list of domains");
  domains = normaliseDomains(domains);
  for (const domain of domains) if (!domainPattern.test(domain)) problems.add(`${at}.domains`, `'${domain}' is not a registry domain`);
  if (domains.length > 32) problems.add(`${at}.domains`, "lists more than 32 domains");

  const assumeRoleArn = optionalText(raw.assumeRoleArn);
  if (assumeRoleArn !== undefined && !ramArnPattern.test(assumeRoleArn)) problems.add(`${at}.assumeRoleARN`, `'${assumeRoleArn}' is not a RAM role ARN (acs:ram::<account>:role/<name>)`);

  let expireDuration: number | undefined;
  const expireText = optionalText(raw.expireDuration);
  if (expireText !== undefined) {
    expireDuration = Number(expireText);
    if (!Number.isInteger(expireDuration) || expireDuration < 900 || expireDuration > 43200) {
      problems.add(`${at}.expireDuration`, `'${expireText}' must be a whole number of seconds from 900 to 43200 (at most the role's maximum session duration)`);
    }
  }

  let rrsaRoleArn = optionalText(raw.rrsaRoleArn);
  let rrsaOidcProviderArn = optionalText(raw.rrsaOidcProviderArn);
  if (rrsaRoleArn !== undefined && !ramArnPattern.test(rrsaRoleArn)) problems.add(`${at}.rrsaRoleARN`, `'${rrsaRoleArn}' is not a RAM role ARN`);
  if (rrsaOidcProviderArn !== undefined && !ramArnPattern.test(rrsaOidcProviderArn)) problems.add(`${at}.rrsaOIDCProviderRoleARN`, `'${rrsaOidcProviderArn}' is not a RAM OIDC provider ARN`);
  if (rrsa && (rrsaRoleArn === undefined) !== (rrsaOidcProviderArn === undefined)) {
    problems.add(`${at}.${rrsaRoleArn === undefined ? "rrsaRoleARN" : "rrsaOIDCProviderRoleARN"}`, "is required together with the other RRSA field; set both or neither");
  }
  if (!rrsa && (rrsaRoleArn !== undefined || rrsaOidcProviderArn !== undefined)) {
    warnings.push(`key '${at}': the RRSA fields are ignored because 'rrsa' is not enabled`);
    rrsaRoleArn = undefined;
    rrsaOidcProviderArn = undefined;
  }
  if (problems.messages.length > before || regionId === undefined) return undefined;

  const entry: RegistryEntry = { regionId, domains, secretName: secretNameFor({ instanceId, regionId, domains }) };
  if (instanceId !== undefined) entry.instanceId = instanceId;
  if (assumeRoleArn !== undefined) entry.assumeRoleArn = assumeRoleArn;
  if (expireDuration !== undefined) entry.expireDuration = expireDuration;
  if (rrsaRoleArn !== undefined) entry.rrsaRoleArn = rrsaRoleArn;
  if (rrsaOidcProviderArn !== undefined) entry.rrsaOidcProviderArn = rrsaOidcProviderArn;
  return entry;
}

function parseRegistries(key: string, value: string, defaultRegionId: string | undefined, rrsa: boolean, problems: Problems, warnings: string[]): RegistryEntry[] {
  let document: unknown;
  try {
    document = parseYaml(value);
  } catch (error) {
    const line = (error as { linePos?: [{ line: number }] }).linePos?.[0]?.line;
    problems.add(key, `is not valid YAML${line === undefined ? "" : ` (line ${line})`}; it must be a list of '- instanceId: ...' items, indented consistently`);
    return [];
  }
  if (document === null || document === undefined) {
    problems.add(key, "is empty; list at least one registry");
    return [];
  }
  const items = Array.isArray(document) ? document : [document];
  const entries: RegistryEntry[] = [];
  items.forEach((item, index) => {
    const entry = parseRegistryItem(key, index, item, defaultRegionId, rrsa, problems, warnings);
    if (entry === undefined) return;
    const duplicate = entries.findIndex((other) => other.secretName === entry.secretName);
    if (duplicate >= 0) problems.add(`${key}[${index}]`, `repeats ${key}[${duplicate}] (same instance, region and domains)`);
    else entries.push(entry);
  });
  if (entries.length > 64) problems.add(key, "lists more than 64 registries");
  return entries;
}

function parseBrokerUrl(key: string, value: string | undefined, problems: Problems, warnings: string[]): string {
  const text = value?.trim() ?? "";
  if (text === "") {
    problems.add("broker-url", "is required: the https URL of the credential broker, e.g. https://broker.example.com");
    return "";
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    problems.add(key, `'${text}' is not a URL`);
    return "";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") problems.add(key, `'${text}' must be an http(s) URL`);
  if (url.username !== "" || url.password !== "") problems.add(key, "must not carry credentials in the URL");
  if (url.search !== "" || url.hash !== "") problems.add(key, "must not have a query or fragment");
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
  if (url.protocol === "http:" && !loopback) warnings.push(`key '${key}': plain http sends the ServiceAccount token unencrypted; use https outside a trusted network`);
  return url.href.replace(/\/+$/, "");
}

/**
 * Parses and validates the ConfigMap data. Throws `ConfigInvalid` naming every bad key at once, so
 * one edit fixes them all; returns warnings for keys that are ignored.
 */
export function parseRefresherConfig(data: Readonly<Record<string, string>> | undefined, source = "ConfigMap kube-system/acr-configuration"): ParsedConfig {
  const input = data ?? {};
  const problems = new Problems();
  const warnings: string[] = [];

  const known = new Set<string>(Object.values(settings).flat());
  for (const key of Object.keys(input)) {
    if (known.has(key)) continue;
    if (ignoredAddonKeys.has(key)) warnings.push(`key '${key}' is an add-on setting this refresher does not use; it is ignored`);
    else warnings.push(`key '${key}' is not a known setting and is ignored (check its spelling)`);
  }

  const brokerUrlSetting = read(input, "brokerUrl", problems);
  const brokerUrl = parseBrokerUrl(brokerUrlSetting?.key ?? "broker-url", brokerUrlSetting?.value, problems, warnings);

  const namespaceSetting = read(input, "watchNamespace", problems);
  const watchNamespace = parseSelector(namespaceSetting?.key ?? "watch-namespace", namespaceSetting?.value, ["all", "*"], globOf(dns1123Label), "namespace name", problems);

  const excludeSetting = read(input, "excludeNamespace", problems);
  const excludeNamespaces = excludeSetting === undefined ? (watchNamespace.kind === "all" ? defaultExcludedNamespaces : []) : splitList(excludeSetting.value);
  for (const pattern of excludeNamespaces) if (!globOf(dns1123Label)(pattern)) problems.add(excludeSetting?.key ?? "exclude-namespace", `'${pattern}' is not a namespace name or glob`);

  const accountSetting = read(input, "serviceAccount", problems);
  const serviceAccount = parseSelector(accountSetting?.key ?? "service-account", accountSetting?.value, ["*"], globOf(dns1123Subdomain), "ServiceAccount name", problems);

  let expiringThresholdSeconds = defaultExpiringThresholdSeconds;
  const thresholdSetting = read(input, "expiringThreshold", problems);
  if (thresholdSetting !== undefined && thresholdSetting.value.trim() !== "") {
    const milliseconds = parseGoDuration(thresholdSetting.value);
    if (milliseconds === undefined || milliseconds < 0) problems.add(thresholdSetting.key, `'${thresholdSetting.value}' is not a duration such as 15m, 1h or 90s`);
    else if (milliseconds > 12 * 3_600_000) problems.add(thresholdSetting.key, `'${thresholdSetting.value}' is longer than 12h, the longest credential lifetime`);
    else expiringThresholdSeconds = Math.round(milliseconds / 1000);
  }

  let spreadWindowSeconds = defaultSpreadWindowSeconds;
  const spreadSetting = read(input, "spreadWindow", problems);
  if (spreadSetting !== undefined && spreadSetting.value.trim() !== "") {
    const milliseconds = parseGoDuration(spreadSetting.value);
    if (milliseconds === undefined || milliseconds < 0) problems.add(spreadSetting.key, `'${spreadSetting.value}' is not a duration such as 2m or 90s`);
    else if (milliseconds > 3_600_000) problems.add(spreadSetting.key, `'${spreadSetting.value}' is longer than 1h; keep it within the CronJob's activeDeadlineSeconds`);
    else spreadWindowSeconds = Math.round(milliseconds / 1000);
  }

  const emailSetting = read(input, "notifyEmail", problems);
  const notifyEmail = optionalText(emailSetting?.value);
  if (notifyEmail !== undefined && (notifyEmail.length > 254 || /\s/.test(notifyEmail))) problems.add(emailSetting?.key ?? "notify-email", "must be one e-mail address");

  const rrsaSetting = read(input, "rrsa", problems);
  const rrsa = rrsaSetting === undefined ? false : parseRrsa(rrsaSetting.key, rrsaSetting.value, problems);

  const regionSetting = read(input, "defaultRegionId", problems);
  const defaultRegionId = optionalText(regionSetting?.value);
  if (defaultRegionId !== undefined && !regionPattern.test(defaultRegionId)) problems.add(regionSetting?.key ?? "default-region-id", `'${defaultRegionId}' is not a region id such as cn-hangzhou`);

  const registrySetting = read(input, "registryInfo", problems);
  let registries: RegistryEntry[] = [];
  if (registrySetting === undefined) problems.add("acr-registry-info", "is required: a YAML list of registries, e.g. '- instanceId: cri-xxx\\n  regionId: cn-hangzhou'");
  else registries = parseRegistries(registrySetting.key, registrySetting.value, defaultRegionId, rrsa, problems, warnings);

  if (problems.messages.length > 0) {
    throw new AcrCredentialError("ConfigInvalid", `${source} is invalid: ${problems.messages.join("; ")}; fix it and run again`, { details: { problems: problems.messages } });
  }
  const config: RefresherConfig = { brokerUrl, watchNamespace, excludeNamespaces, serviceAccount, expiringThresholdSeconds, spreadWindowSeconds, rrsa, registries };
  if (notifyEmail !== undefined) config.notifyEmail = notifyEmail;
  return { config: refresherConfigSchema.parse(config), warnings };
}

/** `*` and `?` globs, anchored; everything else literal. */
export function matchesPattern(pattern: string, name: string): boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return pattern === name;
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${source}$`).test(name);
}

export function selects(selector: Selector, name: string): boolean {
  return selector.kind === "all" || selector.patterns.some((pattern) => matchesPattern(pattern, name));
}

/** True when the selector names only exact names, so they can be listed one by one. */
export function literalNames(selector: Selector): string[] | undefined {
  if (selector.kind === "all" || selector.patterns.some((pattern) => /[*?]/.test(pattern))) return undefined;
  return selector.patterns;
}
