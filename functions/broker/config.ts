/**
 * The broker's configuration (docs/broker.md, "Configuration"): which clusters it trusts, how it checks their tokens and
 * which registries each may receive. Parsed once at cold start; every field exists here only.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { instanceIdSchema, regionIdSchema, roleArnSchema, sessionSecondsSchema } from "../../shared/alibaba/names.ts";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";
import { describeIssues } from "../../shared/schema-problems.ts";
import { defaultKubeletAudience, defaultRoleAnnotation, kubeletDefaultsSchema, kubeletProviderSchema } from "./kubelet-grants.ts";

const loopbackHosts = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** An https URL; plain http only for loopback hosts (the local sandbox and tests). */
const secureUrl = z.string().refine(
  (value) => {
    try {
      const url = new URL(value);
      return url.protocol === "https:" || (url.protocol === "http:" && loopbackHosts.has(url.hostname));
    } catch {
      return false;
    }
  },
  { error: "expected an https URL (http only for 127.0.0.1 or localhost)" },
);

const domain = z.string().regex(/^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:\d{1,5})?$/, {
  error: "expected a registry host name",
});

export const configuredRegistrySchema = z.strictObject({
  instanceId: instanceIdSchema.optional(),
  regionId: regionIdSchema,
  domains: z.array(domain).min(1).max(32).optional(),
  assumeRoleArn: roleArnSchema.optional(),
  /** STS session length of `assumeRoleArn`, and the longest a request may ask for. */
  expireDuration: sessionSecondsSchema.optional(),
});
export type ConfiguredRegistry = z.infer<typeof configuredRegistrySchema>;

const jwkSchema = z.looseObject({ kty: z.string(), kid: z.string().optional() });

const clusterName = z.string().regex(/^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/, { error: "expected a name of lowercase letters, digits, '.', '_' or '-'" });

export const clusterSchema = z
  .strictObject({
    name: clusterName,
    issuer: secureUrl,
    jwksUri: secureUrl.optional(),
    jwks: z.strictObject({ keys: z.array(jwkSchema).min(1) }).optional(),
    /** PEM bundle trusted when fetching discovery and JWKS (a cluster's private CA); relative to the config file. */
    caFile: z.string().min(1).optional(),
    subjects: z.array(z.string().min(1)).min(1),
    registries: z.array(configuredRegistrySchema).default([]),
    allowRrsa: z.boolean().default(false),
    /** The cluster's own region: fills request entries that name none, as the add-on defaults to the cluster's region. */
    regionId: regionIdSchema.optional(),
    /** Which pod ServiceAccounts may pull which registries through the kubelet credential provider (docs/kubelet-provider.md). */
    kubeletProvider: kubeletProviderSchema(configuredRegistrySchema).optional(),
  })
  .refine((cluster) => !(cluster.jwks && cluster.jwksUri), { error: "set either jwks or jwksUri, not both", path: ["jwks"] });
export type Cluster = z.infer<typeof clusterSchema>;

const accountId = z
  .string({ error: "expected an account id (UID) as a quoted string of digits" })
  .regex(/^\d{1,20}$/, { error: "expected an account id (UID) as a quoted string of digits" });

/**
 * ACK clusters trusted by rule rather than by entry: a token whose issuer has the ACK RRSA form is
 * served once the ACK API confirms the cluster is in one of `accounts` with RRSA on for exactly that
 * issuer (and carries `tag`, if set). Members get the group's subjects and registries.
 */
export const clusterGroupSchema = z.strictObject({
  name: clusterName,
  /** Accounts whose clusters belong to the group; each is read with the broker's identity, or `roleArn` of that account. */
  accounts: z
    .array(
      z
        .strictObject({ id: accountId, roleArn: roleArnSchema.optional() })
        .refine((a) => !a.roleArn || a.roleArn.startsWith(`acs:ram::${a.id}:`), { error: "roleArn must be a role of this account", path: ["roleArn"] }),
    )
    .min(1),
  /** Only clusters in these regions; default any region. */
  regions: z.array(regionIdSchema).min(1).optional(),
  /** A cluster tag every member must carry, e.g. {key: acr-credential-broker, value: enabled}. */
  tag: z.strictObject({ key: z.string().min(1).max(128), value: z.string().max(128) }).optional(),
  subjects: z.array(z.string().min(1)).min(1),
  registries: z.array(configuredRegistrySchema).default([]),
  allowRrsa: z.boolean().default(false),
});
export type ClusterGroup = z.infer<typeof clusterGroupSchema>;

export const alibabaCloudSchema = z.strictObject({
  /** host[:port] of STS; a VPC endpoint such as sts-vpc.cn-hangzhou.aliyuncs.com inside Alibaba Cloud. */
  stsEndpoint: z.string().min(1).default("sts.aliyuncs.com"),
  /** host[:port] of Container Registry; `{regionId}` is replaced by the registry's region. */
  crEndpoint: z.string().min(1).default("cr.{regionId}.aliyuncs.com"),
  protocol: z.enum(["https", "http"]).default("https"),
  /** host[:port] of the ACK (Container Service) API; `{regionId}` is replaced by the cluster's region. */
  csEndpoint: z.string().min(1).default("cs.{regionId}.aliyuncs.com"),
  /** The ACK RRSA issuer form cluster groups match; `{regionId}` and `{clusterId}` are read from a token's issuer. */
  ackIssuer: z
    .string()
    .refine((form) => form.includes("{regionId}") && form.includes("{clusterId}"), { error: "expected a URL form with {regionId} and {clusterId}" })
    .refine((form) => secureUrl.safeParse(form.replaceAll("{regionId}", "cn-hangzhou").replaceAll("{clusterId}", "c0123456")).success, {
      error: "expected an https URL form (http only for 127.0.0.1 or localhost)",
    })
    .default("https://oidc-ack-{regionId}.oss-{regionId}.aliyuncs.com/{clusterId}"),
});
export type AlibabaCloudEndpoints = z.infer<typeof alibabaCloudSchema>;

/** A Redis-protocol URL: `redis://` in a VPC or on loopback, `rediss://` (TLS) anywhere. */
const redisUrl = z.string().refine(
  (value) => {
    try {
      const url = new URL(value);
      return (url.protocol === "redis:" || url.protocol === "rediss:") && url.hostname !== "" && /^(\/\d{0,2})?$/.test(url.pathname);
    } catch {
      return false;
    }
  },
  { error: "expected redis://host:6379 or rediss://host:6380 (TLS), optionally with user:password@ and a /db number" },
);

/** The fleet's shared cache on Tair / ApsaraDB for Redis (docs/deploy.md); its key comes from BROKER_CACHE_KEY. */
export const sharedCacheSchema = z.strictObject({
  url: redisUrl,
  /** Every key the broker writes starts with it; brokers with different identities must not share one. */
  keyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9:._{}-]{1,64}$/, { error: "expected 1-64 letters, digits or ':._-{}'" })
    .default("acr-credential-broker:"),
  /** PEM bundle trusted for rediss:// besides the system's CAs; relative to the config file. */
  caFile: z.string().min(1).optional(),
  /** Longest wait for one Redis operation before it counts as a miss. */
  operationTimeoutMs: z.number().int().min(10).max(5000).default(250),
  /** How long one instance may refresh a key for the fleet before another takes over. */
  leaseSeconds: z.number().min(1).max(120).default(15),
  /** Consecutive failed operations after which Redis is skipped for `breakerCoolDownSeconds`. */
  breakerFailures: z.number().int().min(1).max(100).default(3),
  breakerCoolDownSeconds: z.number().min(1).max(600).default(10),
});
export type SharedCacheConfig = z.infer<typeof sharedCacheSchema>;

export const brokerConfigSchema = z
  .strictObject({
    audience: z.string().min(1),
    clockSkewSeconds: z.number().int().min(0).max(600).default(60),
    maxTokenLifetimeSeconds: z.number().int().min(60).default(86400),
    refreshBeforeExpirySeconds: z.number().int().min(0).max(3000).default(900),
    /** Upstream work of one request (retries included) must finish within this. */
    requestTimeoutSeconds: z.number().min(1).max(300).default(10),
    /** A cluster may bypass the cache with `force: true` at most once per this interval. */
    forceIntervalSeconds: z.number().int().min(0).default(60),
    /**
     * How long an Enterprise instance's discovered domains (ListInstanceEndpoint) are used before the
     * broker asks again. Endpoints change when an operator adds a domain or a VPC endpoint, far less
     * often than credentials are renewed; `force` (the refresher's resync) asks at once.
     */
    discoveredDomainsTtlSeconds: z.number().int().min(60).max(604_800).default(21_600),
    /** Bound on cached credentials (and, separately, on cached STS sessions). */
    cacheMaxEntries: z.number().int().min(1).default(1000),
    /** Clusters whose keys (imported JWKS, fetched key sets) are held at once; others are set up again on their next token. */
    clusterKeysMaxEntries: z.number().int().min(1).default(2000),
    alibabaCloud: alibabaCloudSchema.default(() => alibabaCloudSchema.parse({})),
    clusters: z.array(clusterSchema).default([]),
    clusterGroups: z.array(clusterGroupSchema).default([]),
    sharedCache: sharedCacheSchema.optional(),
    kubeletProvider: kubeletDefaultsSchema.default({ audience: defaultKubeletAudience, roleAnnotation: defaultRoleAnnotation }),
  })
  .superRefine((config, ctx) => {
    if (config.clusters.length === 0 && config.clusterGroups.length === 0)
      ctx.addIssue({ code: "custom", path: ["clusters"], message: "no cluster is trusted; add clusters entries or clusterGroups" });
    /** `annotated`: a kubelet grant's registries, whose role may also come from its annotationRoles. */
    const checkRegistries = (registries: ConfiguredRegistry[], at: (string | number)[], annotated = false) =>
      registries.forEach((registry, r) => {
        const lifetime = registry.expireDuration ?? 3600;
        if ((registry.assumeRoleArn || annotated) && lifetime <= config.refreshBeforeExpirySeconds) {
          ctx.addIssue({
            code: "custom",
            path: [...at, "registries", r, "expireDuration"],
            message: `must be longer than refreshBeforeExpirySeconds (${config.refreshBeforeExpirySeconds}), or no credential could ever be handed out`,
          });
        }
        if (registry.expireDuration !== undefined && !registry.assumeRoleArn && !annotated) {
          ctx.addIssue({
            code: "custom",
            path: [...at, "registries", r, "expireDuration"],
            message: "only applies with assumeRoleArn (it is that role's session length)",
          });
        }
      });
    const groupNames = new Set<string>();
    config.clusterGroups.forEach((group, index) => {
      if (groupNames.has(group.name))
        ctx.addIssue({ code: "custom", path: ["clusterGroups", index, "name"], message: `duplicate cluster group name '${group.name}'` });
      groupNames.add(group.name);
      checkRegistries(group.registries, ["clusterGroups", index]);
    });
    const names = new Set<string>();
    const issuers = new Set<string>();
    config.clusters.forEach((cluster, index) => {
      if (names.has(cluster.name)) ctx.addIssue({ code: "custom", path: ["clusters", index, "name"], message: `duplicate cluster name '${cluster.name}'` });
      if (issuers.has(cluster.issuer))
        ctx.addIssue({
          code: "custom",
          path: ["clusters", index, "issuer"],
          message: `issuer '${cluster.issuer}' is already used by another cluster; tokens are matched to clusters by issuer`,
        });
      names.add(cluster.name);
      issuers.add(cluster.issuer);
      // A pod's own token for the kubelet audience must never pass as a refresher's token, nor the reverse.
      if (cluster.kubeletProvider && (cluster.kubeletProvider.audience ?? config.kubeletProvider.audience) === config.audience) {
        ctx.addIssue({
          code: "custom",
          path: ["clusters", index, "kubeletProvider", "audience"],
          message: `must differ from the broker's audience '${config.audience}'`,
        });
      }
      checkRegistries(cluster.registries, ["clusters", index]);
      cluster.kubeletProvider?.grants.forEach((grant, g) =>
        checkRegistries(grant.registries, ["clusters", index, "kubeletProvider", "grants", g], grant.annotationRoles.length > 0),
      );
    });
  });
export type BrokerConfig = z.infer<typeof brokerConfigSchema>;

/** Validates parsed YAML/JSON; errors name the source, the field path and what is expected. */
export function parseConfig(raw: unknown, source: string): BrokerConfig {
  const result = brokerConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new AcrCredentialError("ConfigInvalid", `${source}: ${describeIssues(result.error, 3)}; fix the configuration and restart`);
}

function parseJsonOrYaml(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // A flow mapping that is YAML but not JSON (comments, unquoted keys), or broken JSON: YAML decides and words the error.
    return parseYaml(text);
  }
}

/** Parses YAML or JSON text (JSON is YAML). */
export function parseConfigText(text: string, source: string): BrokerConfig {
  let raw: unknown;
  try {
    // JSON is YAML, but the YAML parser takes ten times as long over it: a cold start cost.
    raw = /^\s*\{/.test(text) ? parseJsonOrYaml(text) : parseYaml(text);
  } catch (error) {
    throw new AcrCredentialError("ConfigInvalid", `${source}: not valid YAML or JSON: ${oneLine(error)}`);
  }
  return parseConfig(raw, source);
}

export interface LoadedConfig {
  config: BrokerConfig;
  /** Where relative paths in the config (caFile) are resolved from. */
  baseDir: string;
  source: string;
}

/** Reads the configuration from `BROKER_CONFIG` (inline) or `BROKER_CONFIG_FILE`. */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, cwd = process.cwd()): LoadedConfig {
  const inline = env.BROKER_CONFIG;
  const file = env.BROKER_CONFIG_FILE;
  if (inline && file) throw new AcrCredentialError("ConfigInvalid", "both BROKER_CONFIG and BROKER_CONFIG_FILE are set; keep one");
  if (inline) return { config: parseConfigText(inline, "BROKER_CONFIG"), baseDir: cwd, source: "BROKER_CONFIG" };
  if (file) return loadConfigFile(resolve(cwd, file));
  throw new AcrCredentialError("ConfigInvalid", "no configuration: set BROKER_CONFIG (YAML or JSON) or BROKER_CONFIG_FILE (a path)");
}

export function loadConfigFile(path: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new AcrCredentialError("FileUnreadable", `cannot read the broker configuration ${path}: ${oneLine(error)}`);
  }
  return { config: parseConfigText(text, path), baseDir: dirname(path), source: path };
}

/** Reads each cluster's `caFile` now, so a missing CA is a start-up error, not a per-request one. */
export function readClusterCas(loaded: LoadedConfig): Map<string, string> {
  const cas = new Map<string, string>();
  loaded.config.clusters.forEach((cluster, index) => {
    if (!cluster.caFile) return;
    const path = resolve(loaded.baseDir, cluster.caFile);
    try {
      cas.set(cluster.name, readFileSync(path, "utf8"));
    } catch (error) {
      throw new AcrCredentialError("ConfigInvalid", `${loaded.source}: clusters[${index}].caFile: cannot read ${path}: ${oneLine(error)}`);
    }
  });
  return cas;
}

/** Reads `sharedCache.caFile` now, so a missing CA is a start-up error. */
export function readSharedCacheCa(loaded: LoadedConfig): string | undefined {
  const caFile = loaded.config.sharedCache?.caFile;
  if (!caFile) return undefined;
  const path = resolve(loaded.baseDir, caFile);
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new AcrCredentialError("ConfigInvalid", `${loaded.source}: sharedCache.caFile: cannot read ${path}: ${oneLine(error)}`);
  }
}
