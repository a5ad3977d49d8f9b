/**
 * The refresher's configuration, read from the `data` of ConfigMap `kube-system/acr-configuration`
 * exactly as the aliyun-acr-credential-helper add-on writes it (both its kebab-case and its
 * managed-edition camelCase keys), or from the managed add-on's parameter JSON pasted under
 * `addon-parameters`, plus the refresher's own `broker-url` and `exclude-namespace`. Values mean
 * what they mean to the add-on, in every spelling its documentation uses.
 */
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { anyRamArnPattern, instanceIdPattern, regionIdPattern, sessionSeconds } from "../shared/alibaba/names.ts";
import { AcrCredentialError } from "../shared/errors.ts";
import { parseGoDuration } from "./duration.ts";
import { normaliseDomains, registryEntrySchema, registryLabel, secretNameFor, type RegistryEntry } from "./registry.ts";
import { defaultSpreadWindowSeconds } from "./spread.ts";

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

/**
 * The settings, each under the names the add-on (self-managed and managed) uses. Keys are compared
 * without case, '-' or '_', so `watch-namespace`, `watchNamespace` and `WatchNamespace` are one key.
 */
const settings = {
  serviceAccount: ["service-account", "serviceAccount"],
  watchNamespace: ["watch-namespace", "watchNamespace"],
  expiringThreshold: ["expiring-threshold", "expiringThreshold"],
  notifyEmail: ["notify-email", "notifyEmail"],
  registryInfo: ["acr-registry-info", "AcrInstanceInfo"],
  rrsa: ["rrsa", "enableRRSA"],
  brokerUrl: ["broker-url", "brokerUrl"],
  excludeNamespace: ["exclude-namespace", "excludeNamespace"],
  defaultRegionId: ["default-region-id", "defaultRegionId"],
  spreadWindow: ["spread-window", "spreadWindow"],
} as const;
type Setting = keyof typeof settings;

/** The ConfigMap key that holds the managed add-on's parameter JSON as the console or the ACK API shows it. */
export const addonParametersKey = "addon-parameters";

const keyOf = (name: string) => name.toLowerCase().replace(/[-_]/g, "");
const settingByKey = new Map<string, Setting>(
  Object.entries(settings).flatMap(([setting, names]) => names.map((name) => [keyOf(name), setting as Setting] as const)),
);

/** Add-on settings that have no meaning here, and what serves their purpose instead. */
const retiredKeys = new Map<string, string>([
  ["acrapiversion", "the broker chooses the Container Registry API; remove it"],
  ["tokenmode", "the broker holds the cloud identity, so no worker or managed role is used in the cluster; remove it"],
  [
    "webhookconfiguration",
    "there is no admission webhook; run the refresher with --watch (job/deploy/watch), which gives a new ServiceAccount its pull secret within seconds of its creation (docs/migrate.md)",
  ],
  [
    "acrregistry",
    "this first-generation list of registry domains is replaced by 'acr-registry-info': one item per registry with instanceId, regionId and domains (docs/migrate.md)",
  ],
]);

const defaultExpiringThresholdSeconds = 15 * 60;

const dns1123Label = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const dns1123Subdomain = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const globOf = (valid: RegExp) => (pattern: string) => valid.test(pattern.replace(/[*?]/g, "a"));
const domainPattern = /^(?=.{1,253}(:|$))[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:\d{1,5})?$/;

class Problems {
  readonly messages: string[] = [];
  add(key: string, message: string): void {
    this.messages.push(`key '${key}': ${message}`);
  }
}

/** One value as given: the key names where it came from (a ConfigMap key or `addon-parameters.<name>`). */
interface Given {
  key: string;
  value: string;
}
type Settings = Map<Setting, Given[]>;

/**
 * Reads one setting; two spellings with different values are a mistake worth naming. `same` decides
 * what "different" means where one meaning has several forms (`rrsa: {enable: true}` and `enableRRSA: true`).
 */
function read(
  given: Settings,
  setting: Setting,
  problems: Problems,
  same: (a: string, b: string) => boolean = (a, b) => a.trim() === b.trim(),
): Given | undefined {
  const [first, ...others] = given.get(setting) ?? [];
  if (first === undefined) return undefined;
  const other = others.find((candidate) => !same(first.value, candidate.value));
  if (other !== undefined) problems.add(first.key, `is also set as '${other.key}' with a different value; keep one`);
  return first;
}

/** A parameter of the managed add-on as ConfigMap text: a list of names as a comma list, other lists and objects as JSON (which is YAML), booleans and numbers as words. */
function parameterText(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((item) => typeof item === "string")) return value.join(",");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * The managed add-on's parameters, pasted as they are: the parameter object
 * (`{"AcrInstanceInfo":[...],"enableRRSA":false,"watchNamespace":"all",...}`), or the ACK API's add-on
 * object that carries it as the string `config` (`{"name":"managed-aliyun-acr-credential-helper","config":"{...}"}`).
 */
function parseAddonParameters(key: string, value: string, problems: Problems): Record<string, unknown> {
  const shape =
    'paste the add-on\'s parameter JSON as it is, e.g. {"AcrInstanceInfo":[{"instanceId":"cri-xxx","regionId":"cn-hangzhou"}],"watchNamespace":"all"}';
  const parse = (text: string): unknown => {
    try {
      return parseYaml(text);
    } catch {
      return undefined;
    }
  };
  let document = parse(value);
  if (document !== null && typeof document === "object" && !Array.isArray(document) && "config" in document && "name" in document) {
    const config = (document as { config: unknown }).config;
    document = typeof config === "string" ? parse(config) : config;
  }
  if (document === null || (typeof document === "string" && document.trim() === "")) return {};
  if (typeof document !== "object" || Array.isArray(document)) {
    problems.add(key, `is not the add-on's parameter object; ${shape}`);
    return {};
  }
  return document as Record<string, unknown>;
}

/** Sorts ConfigMap keys and pasted add-on parameters into settings, warning about the ones that mean nothing here. */
function collectSettings(data: Readonly<Record<string, string>>, problems: Problems, warnings: string[]): Settings {
  const given: Settings = new Map();
  const add = (key: string, name: string, value: string, what: string) => {
    const setting = settingByKey.get(keyOf(name));
    const retired = retiredKeys.get(keyOf(name));
    if (setting !== undefined) given.set(setting, [...(given.get(setting) ?? []), { key, value }]);
    else if (retired !== undefined) warnings.push(`key '${key}' is ignored: ${retired}`);
    else warnings.push(`key '${key}' is not a known ${what} and is ignored (check its spelling)`);
  };
  const pasted: Array<[string, Record<string, unknown>]> = [];
  for (const [key, value] of Object.entries(data)) {
    if (keyOf(key) === keyOf(addonParametersKey)) pasted.push([key, parseAddonParameters(key, value, problems)]);
    else add(key, key, value, "setting");
  }
  // After the ConfigMap's own keys, so that a conflict names the ConfigMap key first.
  for (const [key, parameters] of pasted) {
    for (const [name, value] of Object.entries(parameters)) add(`${key}.${name}`, name, parameterText(value), "add-on parameter");
  }
  return given;
}

function splitList(value: string): string[] {
  return value
    .split(/[,\s]+/)
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/**
 * A namespace or ServiceAccount selector. Kubernetes names are lower case, so `Default` (as the add-on's
 * docs write it) is `default`, and the all-words (`all`, `ALL`, `*`) match in any case.
 */
function parseSelector(
  key: string,
  value: string | undefined,
  allWords: readonly string[],
  valid: (pattern: string) => boolean,
  what: string,
  problems: Problems,
): Selector {
  const items = splitList(value ?? "");
  if (items.length === 0) return { kind: "list", patterns: ["default"] };
  if (items.some((item) => allWords.includes(item.toLowerCase()))) {
    if (items.length > 1) problems.add(key, `'${items.join(",")}' mixes '${allWords.join("' or '")}' with names; use one or the other`);
    return { kind: "all" };
  }
  for (const item of items)
    if (!valid(item.toLowerCase())) problems.add(key, `'${item}' is not a ${what} (letters, digits and '-', optionally with '*' or '?')`);
  return { kind: "list", patterns: [...new Set(items.map((item) => item.toLowerCase()))] };
}

function parseBoolean(value: unknown): boolean | undefined {
  if (typeof value === "boolean") return value;
  if (typeof value !== "string") return undefined;
  const word = value.trim().toLowerCase();
  if (["true", "yes", "on", "enable", "enabled", "1"].includes(word)) return true;
  if (["false", "no", "off", "disable", "disabled", "0", ""].includes(word)) return false;
  return undefined;
}

/** `rrsa` comes as the add-on's block (`enable: true`); `enableRRSA` (the managed add-on's) and a bare word as a boolean. */
function parseRrsa(key: string, value: string, problems: Problems): boolean {
  const expected = keyOf(key).endsWith("enablerrsa") ? "expected true or false" : "expected 'enable: true' or 'enable: false'";
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
    if (parsed === undefined) problems.add(key, expected);
    return parsed ?? false;
  }
  const parsed = parseBoolean(typeof document === "boolean" ? document : String(document));
  if (parsed === undefined) problems.add(key, expected);
  return parsed ?? false;
}

const sameRrsa = (a: string, b: string) => parseRrsa("rrsa", a, new Problems()) === parseRrsa("rrsa", b, new Problems());

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

/**
 * One item of `acr-registry-info`; several entries when `instanceId` lists several instances (the
 * managed add-on's form), each with the item's other fields. Without `regionId` (and without
 * `default-region-id`) the entry leaves the region to the broker, which knows the cluster's.
 */
function parseRegistryItem(
  key: string,
  index: number,
  item: unknown,
  defaultRegionId: string | undefined,
  rrsa: boolean,
  problems: Problems,
  warnings: string[],
): RegistryEntry[] {
  const at = `${key}[${index}]`;
  if (item === null || item === undefined) item = {};
  if (typeof item !== "object" || Array.isArray(item)) {
    problems.add(at, "expected a mapping with instanceId, regionId, domains, ...");
    return [];
  }
  const raw: RawItem = {};
  const unknown: string[] = [];
  for (const [name, value] of Object.entries(item as Record<string, unknown>)) {
    const field = itemFields[name.toLowerCase()];
    if (field !== undefined) raw[field] = value;
    else if (secretItemFields.has(name.toLowerCase()))
      warnings.push(`key '${at}.${name}' is ignored: the broker holds the cloud identity, so remove the access key from the ConfigMap`);
    else unknown.push(name);
  }
  // Only unknown fields is a misspelt item, not the Personal Edition default an empty item stands for.
  if (Object.keys(raw).length === 0 && unknown.length > 0) {
    problems.add(
      at,
      `has none of the fields instanceId, regionId, domains, assumeRoleARN, expireDuration, rrsaRoleARN, rrsaOIDCProviderRoleARN (found ${unknown.map((name) => `'${name}'`).join(", ")}); check their spelling`,
    );
    return [];
  }
  for (const name of unknown) warnings.push(`key '${at}.${name}' is not a known registry field and is ignored`);
  const before = problems.messages.length;
  const instanceIds = [...new Set(splitList(optionalText(raw.instanceId) ?? ""))];
  for (const instanceId of instanceIds)
    if (!instanceIdPattern.test(instanceId))
      problems.add(`${at}.instanceId`, `'${instanceId}' is not an instance id such as cri-xxxxxxxx (leave it empty for the Personal Edition)`);
  const regionId = optionalText(raw.regionId) ?? defaultRegionId;
  if (regionId !== undefined && !regionIdPattern.test(regionId))
    problems.add(`${at}.regionId`, `'${regionId}' is not a region id such as cn-hangzhou (leave it empty for the cluster's region)`);

  let domains: string[] = [];
  if (Array.isArray(raw.domains)) domains = raw.domains.map((domain) => String(domain));
  else if (optionalText(raw.domains) !== undefined) domains = splitList(String(raw.domains));
  else if (raw.domains !== undefined && raw.domains !== null && typeof raw.domains !== "string")
    problems.add(`${at}.domains`, "expected a comma-separated string or a list of domains");
  domains = normaliseDomains(domains);
  for (const domain of domains) if (!domainPattern.test(domain)) problems.add(`${at}.domains`, `'${domain}' is not a registry domain`);
  if (domains.length > 32) problems.add(`${at}.domains`, "lists more than 32 domains");
  if (instanceIds.length > 1 && domains.length > 0) {
    warnings.push(
      `key '${at}': its ${domains.length} domain(s) go into the Secret of each of its ${instanceIds.length} instances, so kubelet may try another instance's password first; give each instance its own item with its own domains`,
    );
  }

  const assumeRoleArn = optionalText(raw.assumeRoleArn);
  if (assumeRoleArn !== undefined && !anyRamArnPattern.test(assumeRoleArn))
    problems.add(`${at}.assumeRoleARN`, `'${assumeRoleArn}' is not a RAM role ARN (acs:ram::<account>:role/<name>)`);

  let expireDuration: number | undefined;
  const expireText = optionalText(raw.expireDuration);
  if (expireText !== undefined) {
    expireDuration = Number(expireText);
    if (!Number.isInteger(expireDuration) || expireDuration < sessionSeconds.min || expireDuration > sessionSeconds.max) {
      problems.add(
        `${at}.expireDuration`,
        `'${expireText}' must be a whole number of seconds from ${sessionSeconds.min} to ${sessionSeconds.max} (at most the role's maximum session duration)`,
      );
    }
  }

  let rrsaRoleArn = optionalText(raw.rrsaRoleArn);
  let rrsaOidcProviderArn = optionalText(raw.rrsaOidcProviderArn);
  if (rrsaRoleArn !== undefined && !anyRamArnPattern.test(rrsaRoleArn)) problems.add(`${at}.rrsaRoleARN`, `'${rrsaRoleArn}' is not a RAM role ARN`);
  if (rrsaOidcProviderArn !== undefined && !anyRamArnPattern.test(rrsaOidcProviderArn))
    problems.add(`${at}.rrsaOIDCProviderRoleARN`, `'${rrsaOidcProviderArn}' is not a RAM OIDC provider ARN`);
  if (rrsa && (rrsaRoleArn === undefined) !== (rrsaOidcProviderArn === undefined)) {
    problems.add(
      `${at}.${rrsaRoleArn === undefined ? "rrsaRoleARN" : "rrsaOIDCProviderRoleARN"}`,
      "is required together with the other RRSA field; set both or neither",
    );
  }
  if (!rrsa && (rrsaRoleArn !== undefined || rrsaOidcProviderArn !== undefined)) {
    warnings.push(
      `key '${at}': the RRSA fields are ignored because RRSA is not enabled ('rrsa: enable: true', or enableRRSA: true in the add-on's parameters)`,
    );
    rrsaRoleArn = undefined;
    rrsaOidcProviderArn = undefined;
  }
  if (problems.messages.length > before) return [];

  return (instanceIds.length === 0 ? [undefined] : instanceIds).map((instanceId) => {
    const entry: RegistryEntry = { domains, secretName: secretNameFor({ instanceId, regionId, domains }) };
    if (instanceId !== undefined) entry.instanceId = instanceId;
    if (regionId !== undefined) entry.regionId = regionId;
    if (assumeRoleArn !== undefined) entry.assumeRoleArn = assumeRoleArn;
    if (expireDuration !== undefined) entry.expireDuration = expireDuration;
    if (rrsaRoleArn !== undefined) entry.rrsaRoleArn = rrsaRoleArn;
    if (rrsaOidcProviderArn !== undefined) entry.rrsaOidcProviderArn = rrsaOidcProviderArn;
    return entry;
  });
}

/** The add-on's published examples write `domains: "a.com","b.com"`, which no YAML parser accepts. */
const quotedDomainList = /domains:\s*"[^"\n]*"\s*,/;

/**
 * `acr-registry-info` as a YAML list (or JSON, which is YAML). Empty or absent means what it means to
 * the add-on: the Personal Edition registry of the cluster's region.
 */
function parseRegistries(
  key: string,
  value: string | undefined,
  defaultRegionId: string | undefined,
  rrsa: boolean,
  problems: Problems,
  warnings: string[],
): RegistryEntry[] {
  let document: unknown;
  try {
    document = parseYaml(value ?? "");
  } catch (error) {
    const line = (error as { linePos?: [{ line: number }] }).linePos?.[0]?.line;
    const fix = quotedDomainList.test(value ?? "")
      ? 'write several domains as one string, e.g. domains: "a.example.com,b.example.com"'
      : "it must be a list of '- instanceId: ...' items, indented consistently";
    problems.add(key, `is not valid YAML${line === undefined ? "" : ` (line ${line})`}; ${fix}`);
    return [];
  }
  const items = document === null || document === undefined || document === "" ? [] : Array.isArray(document) ? document : [document];
  if (items.length === 0) items.push({});
  const entries: RegistryEntry[] = [];
  items.forEach((item, index) => {
    for (const entry of parseRegistryItem(key, index, item, defaultRegionId, rrsa, problems, warnings)) {
      const duplicate = entries.findIndex((other) => other.secretName === entry.secretName);
      if (duplicate >= 0) problems.add(`${key}[${index}]`, `repeats ${registryLabel(entry)} (same instance, region and domains as an earlier item)`);
      else entries.push(entry);
    }
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
  if (url.protocol === "http:" && !loopback)
    warnings.push(`key '${key}': plain http sends the ServiceAccount token unencrypted; use https outside a trusted network`);
  return url.href.replace(/\/+$/, "");
}

/**
 * Parses and validates the ConfigMap data. Throws `ConfigInvalid` naming every bad key at once, so
 * one edit fixes them all; returns warnings for keys that are ignored.
 */
export function parseRefresherConfig(data: Readonly<Record<string, string>> | undefined, source = "ConfigMap kube-system/acr-configuration"): ParsedConfig {
  const problems = new Problems();
  const warnings: string[] = [];
  const given = collectSettings(data ?? {}, problems, warnings);

  const brokerUrlSetting = read(given, "brokerUrl", problems);
  const brokerUrl = parseBrokerUrl(brokerUrlSetting?.key ?? "broker-url", brokerUrlSetting?.value, problems, warnings);

  const namespaceSetting = read(given, "watchNamespace", problems);
  const watchNamespace = parseSelector(
    namespaceSetting?.key ?? "watch-namespace",
    namespaceSetting?.value,
    ["all", "*"],
    globOf(dns1123Label),
    "namespace name",
    problems,
  );

  // None by default: `all` means every namespace, system ones included, as it does for the add-on.
  const excludeSetting = read(given, "excludeNamespace", problems);
  const excludeNamespaces = excludeSetting === undefined ? [] : splitList(excludeSetting.value).map((pattern) => pattern.toLowerCase());
  for (const pattern of excludeNamespaces)
    if (!globOf(dns1123Label)(pattern)) problems.add(excludeSetting?.key ?? "exclude-namespace", `'${pattern}' is not a namespace name or glob`);

  const accountSetting = read(given, "serviceAccount", problems);
  const serviceAccount = parseSelector(
    accountSetting?.key ?? "service-account",
    accountSetting?.value,
    ["*"],
    globOf(dns1123Subdomain),
    "ServiceAccount name",
    problems,
  );

  let expiringThresholdSeconds = defaultExpiringThresholdSeconds;
  const thresholdSetting = read(given, "expiringThreshold", problems);
  if (thresholdSetting !== undefined && thresholdSetting.value.trim() !== "") {
    const milliseconds = parseGoDuration(thresholdSetting.value);
    if (milliseconds === undefined || milliseconds < 0)
      problems.add(thresholdSetting.key, `'${thresholdSetting.value}' is not a duration such as 15m, 1h or 90s`);
    else if (milliseconds > 12 * 3_600_000)
      problems.add(thresholdSetting.key, `'${thresholdSetting.value}' is longer than 12h, the longest credential lifetime`);
    else expiringThresholdSeconds = Math.round(milliseconds / 1000);
  }

  let spreadWindowSeconds = defaultSpreadWindowSeconds;
  const spreadSetting = read(given, "spreadWindow", problems);
  if (spreadSetting !== undefined && spreadSetting.value.trim() !== "") {
    const milliseconds = parseGoDuration(spreadSetting.value);
    if (milliseconds === undefined || milliseconds < 0) problems.add(spreadSetting.key, `'${spreadSetting.value}' is not a duration such as 2m or 90s`);
    else if (milliseconds > 3_600_000)
      problems.add(spreadSetting.key, `'${spreadSetting.value}' is longer than 1h; keep it within the CronJob's activeDeadlineSeconds`);
    else spreadWindowSeconds = Math.round(milliseconds / 1000);
  }

  const emailSetting = read(given, "notifyEmail", problems);
  const notifyEmail = optionalText(emailSetting?.value);
  if (notifyEmail !== undefined && (notifyEmail.length > 254 || /\s/.test(notifyEmail)))
    problems.add(emailSetting?.key ?? "notify-email", "must be one e-mail address");

  const rrsaSetting = read(given, "rrsa", problems, sameRrsa);
  const rrsa = rrsaSetting === undefined ? false : parseRrsa(rrsaSetting.key, rrsaSetting.value, problems);

  const regionSetting = read(given, "defaultRegionId", problems);
  const defaultRegionId = optionalText(regionSetting?.value);
  if (defaultRegionId !== undefined && !regionIdPattern.test(defaultRegionId))
    problems.add(regionSetting?.key ?? "default-region-id", `'${defaultRegionId}' is not a region id such as cn-hangzhou`);

  const registrySetting = read(given, "registryInfo", problems);
  const registries = parseRegistries(registrySetting?.key ?? "acr-registry-info", registrySetting?.value, defaultRegionId, rrsa, problems, warnings);

  if (problems.messages.length > 0) {
    throw new AcrCredentialError("ConfigInvalid", `${source} is invalid: ${problems.messages.join("; ")}; fix it and run again`, {
      details: { problems: problems.messages },
    });
  }
  const config: RefresherConfig = {
    brokerUrl,
    watchNamespace,
    excludeNamespaces,
    serviceAccount,
    expiringThresholdSeconds,
    spreadWindowSeconds,
    rrsa,
    registries,
  };
  if (notifyEmail !== undefined) config.notifyEmail = notifyEmail;
  return { config: refresherConfigSchema.parse(config), warnings };
}

/** `*` and `?` globs, anchored; everything else literal. */
export function matchesPattern(pattern: string, name: string): boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return pattern === name;
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
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
