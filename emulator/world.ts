/**
 * The RAM world the emulator serves: accounts with users, roles and OIDC providers, and the
 * Container Registry instances they own. Shapes follow RAM's own documents where practical.
 */
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { instanceIdSchema, maxSessionSeconds, regionIdSchema, sessionSecondsSchema } from "../shared/alibaba/names.ts";
import { AcrCredentialError, oneLine } from "../shared/errors.ts";
import { describeIssues } from "../shared/schema-problems.ts";
import { faultSettingsSchema } from "./faults.ts";
import { accountIdPattern } from "./ram/arn.ts";
import { permissionPolicySchema, trustPolicySchema } from "./ram/policy.ts";

const accessKeySchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9]{8,64}$/, "an access key id is 8-64 letters and digits"),
  secret: z.string().min(8),
});

/** A user or role lists policies by the name of one of its account's `policies`, or inline. */
const policyRefSchema = z.union([z.string().min(1), permissionPolicySchema]);

/**
 * Personal Edition: a RAM identity must set a registry password once (in the console) before
 * `GET /tokens` answers it; until then it is `USER_NOT_EXIST`. Default: it has set one.
 */
const registryPasswordSet = z.boolean().optional();

const userSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, "a user name is 1-64 letters, digits, '.', '_', '@' or '-'"),
  accessKeys: z.array(accessKeySchema).default([]),
  policies: z.array(policyRefSchema).default([]),
  registryPasswordSet,
});

const roleSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9.-]{1,64}$/, "a role name is 1-64 letters, digits, '.' or '-'"),
  description: z.string().optional(),
  maxSessionDuration: z.number().int().min(maxSessionSeconds.min).max(maxSessionSeconds.max).default(maxSessionSeconds.min),
  trustPolicy: trustPolicySchema,
  policies: z.array(policyRefSchema).default([]),
  registryPasswordSet,
});

const jwksSchema = z.looseObject({ keys: z.array(z.looseObject({ kty: z.string() })).min(1) });

const oidcProviderSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, "a provider name is 1-128 letters, digits, '.', '_' or '-'"),
    issuer: z.url(),
    clientIds: z.array(z.string().min(1)).min(1),
    /** Keys inline; else `jwksUri`; else OIDC discovery at the issuer. */
    jwks: jwksSchema.optional(),
    jwksUri: z.url().optional(),
    /** A PEM bundle trusted when fetching discovery or keys over https; relative to the world file. */
    caFile: z.string().min(1).optional(),
    /** RAM's `IssuanceLimitTime` (hours): tokens whose `iat` is longer ago are refused. RAM's default is 12. */
    issuanceLimitTime: z.number().int().min(1).max(168).default(12),
  })
  .refine((provider) => provider.jwks === undefined || provider.jwksUri === undefined, { message: "give either jwks or jwksUri, not both" });

const repositoryName = z.string().regex(/^[a-z0-9]+(?:[._-][a-z0-9]+)*\/[a-z0-9]+(?:[._-][a-z0-9]+)*$/, "a repository is 'namespace/name' in lower case");
const region = regionIdSchema;

const domainSchema = z.union([
  z
    .string()
    .min(1)
    .transform((domain) => ({ domain, type: "SYSTEM" as const })),
  z.strictObject({ domain: z.string().min(1), type: z.enum(["SYSTEM", "USER"]).default("SYSTEM") }),
]);

const endpointSchema = z.strictObject({
  type: z.enum(["internet", "vpc"]),
  enable: z.boolean().default(true),
  domains: z.array(domainSchema).min(1),
});

const instanceSchema = z.strictObject({
  id: instanceIdSchema,
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{1,28}[a-z0-9]$/, "an instance name is 3-30 lower-case letters, digits or '-'"),
  region,
  specification: z.enum(["Enterprise_Basic", "Enterprise_Standard", "Enterprise_Advanced"]).default("Enterprise_Basic"),
  status: z.enum(["PENDING", "INIT_ERROR", "STARTING", "RUNNING", "STOPPING", "STOPPED", "DELETING", "DELETED"]).default("RUNNING"),
  resourceGroupId: z.string().default("rg-default"),
  /** Epoch ms; fixed by default so responses are reproducible. */
  createTime: z.number().int().default(1_700_000_000_000),
  /** Default: an internet and a vpc endpoint with the standard `<name>-registry[-vpc].<region>.cr.aliyuncs.com` domains. */
  endpoints: z.array(endpointSchema).optional(),
  repositories: z.array(repositoryName).default([]),
});

const personalSchema = z.strictObject({ region, repositories: z.array(repositoryName).default([]) });

/** An ACK cluster (for `DescribeClusterDetail`); with RRSA on, the emulator hosts its issuer unless `issuer` names another. */
const ackClusterSchema = z.strictObject({
  id: z.string().regex(/^c[0-9a-z]{6,63}$/, "an ACK cluster id looks like c0123456789abcdef"),
  name: z.string().min(1).optional(),
  region,
  rrsa: z.strictObject({ enabled: z.boolean().default(true), issuer: z.url().optional() }).default({ enabled: false }),
  tags: z.record(z.string().min(1), z.string()).default({}),
});

const accountSchema = z.strictObject({
  id: z
    .string({ error: "an account id is a 16-digit string (quote it in YAML)" })
    .regex(accountIdPattern, "an account id is a 16-digit string (quote it in YAML)"),
  name: z.string().optional(),
  policies: z.record(z.string().min(1), permissionPolicySchema).default({}),
  users: z.array(userSchema).default([]),
  roles: z.array(roleSchema).default([]),
  oidcProviders: z.array(oidcProviderSchema).default([]),
  instances: z.array(instanceSchema).default([]),
  personal: z.array(personalSchema).default([]),
  ackClusters: z.array(ackClusterSchema).default([]),
});

/** How STS behaves where Alibaba's documentation is silent; see docs/emulator.md. */
const stsSchema = z.strictObject({
  /** Cap (seconds) on a session a role session obtains by assuming another role (role chaining); default none. */
  roleChainingMaxDuration: sessionSecondsSchema.optional(),
});

export const worldSchema = z
  .strictObject({
    accounts: z.array(accountSchema).min(1),
    sts: stsSchema.default({}),
    /** Faults on from the start (the same settings as `emulator.faults.set`). */
    faults: faultSettingsSchema.optional(),
  })
  .superRefine((world, ctx) => {
    const seen = { accounts: new Set<string>(), keys: new Set<string>(), instances: new Set<string>() };
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    world.accounts.forEach((account, a) => {
      if (seen.accounts.has(account.id)) issue(["accounts", a, "id"], `account ${account.id} appears twice`);
      seen.accounts.add(account.id);
      const unique = (kind: "users" | "roles" | "oidcProviders", names: string[]) => {
        const lower = new Set<string>();
        names.forEach((name, i) => {
          if (lower.has(name.toLowerCase())) issue(["accounts", a, kind, i, "name"], `'${name}' appears twice in this account`);
          lower.add(name.toLowerCase());
        });
      };
      unique(
        "users",
        account.users.map((user) => user.name),
      );
      unique(
        "roles",
        account.roles.map((role) => role.name),
      );
      unique(
        "oidcProviders",
        account.oidcProviders.map((provider) => provider.name),
      );
      const checkRefs = (kind: "users" | "roles", index: number, refs: (string | object)[]) =>
        refs.forEach((ref, p) => {
          if (typeof ref === "string" && account.policies[ref] === undefined)
            issue(["accounts", a, kind, index, "policies", p], `no policy named '${ref}' in this account's policies`);
        });
      account.users.forEach((user, u) => {
        checkRefs("users", u, user.policies);
        user.accessKeys.forEach((key, k) => {
          if (seen.keys.has(key.id)) issue(["accounts", a, "users", u, "accessKeys", k, "id"], `access key ${key.id} appears twice`);
          seen.keys.add(key.id);
        });
      });
      account.roles.forEach((role, r) => checkRefs("roles", r, role.policies));
      account.instances.forEach((instance, i) => {
        if (seen.instances.has(instance.id)) issue(["accounts", a, "instances", i, "id"], `instance ${instance.id} appears twice`);
        seen.instances.add(instance.id);
      });
      account.ackClusters.forEach((cluster, c) => {
        if (seen.instances.has(cluster.id)) issue(["accounts", a, "ackClusters", c, "id"], `cluster ${cluster.id} appears twice`);
        seen.instances.add(cluster.id);
      });
      const regions = new Set<string>();
      account.personal.forEach((personal, p) => {
        if (regions.has(personal.region)) issue(["accounts", a, "personal", p, "region"], `a Personal registry in ${personal.region} appears twice`);
        regions.add(personal.region);
      });
    });
  });

export type WorldInput = z.input<typeof worldSchema>;
export type World = z.output<typeof worldSchema>;
export type Account = World["accounts"][number];
export type User = Account["users"][number];
export type Role = Account["roles"][number];
export type OidcProvider = Account["oidcProviders"][number];
export type Instance = Account["instances"][number];
export type PersonalRegistry = Account["personal"][number];
export type Endpoint = z.output<typeof endpointSchema>;
export type AckCluster = Account["ackClusters"][number];

/** Validates a world; `source` names it in the one-line ConfigInvalid error, `baseDir` anchors relative `caFile`s. */
export function parseWorld(input: unknown, options: { source: string; baseDir?: string }): World {
  const result = worldSchema.safeParse(input);
  if (!result.success) {
    throw new AcrCredentialError("ConfigInvalid", `world ${options.source}: ${describeIssues(result.error)}; see docs/emulator.md for the world format`);
  }
  const baseDir = options.baseDir;
  if (baseDir === undefined) return result.data;
  for (const account of result.data.accounts) {
    for (const provider of account.oidcProviders) {
      if (provider.caFile !== undefined && !isAbsolute(provider.caFile)) provider.caFile = resolve(baseDir, provider.caFile);
    }
  }
  return result.data;
}

/** Parses world YAML (or JSON) text. */
export function parseWorldText(text: string, options: { source: string; baseDir?: string }): World {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new AcrCredentialError("ConfigInvalid", `world ${options.source}: not valid YAML: ${oneLine(error)}`);
  }
  return parseWorld(document, options);
}

/** Reads and validates a world file. */
export async function loadWorld(file: string): Promise<World> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : oneLine(error);
    throw new AcrCredentialError("FileUnreadable", `cannot read world file ${file}: ${reason}; pass an existing YAML file with --world`);
  }
  return parseWorldText(text, { source: file, baseDir: dirname(resolve(file)) });
}

/** The endpoints an instance serves: the configured ones, or the standard pair for its name and region. */
export function instanceEndpoints(instance: Instance): Endpoint[] {
  return (
    instance.endpoints ?? [
      { type: "internet", enable: true, domains: [{ domain: `${instance.name}-registry.${instance.region}.cr.aliyuncs.com`, type: "SYSTEM" }] },
      { type: "vpc", enable: true, domains: [{ domain: `${instance.name}-registry-vpc.${instance.region}.cr.aliyuncs.com`, type: "SYSTEM" }] },
    ]
  );
}
