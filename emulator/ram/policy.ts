import { z } from "zod";

/** A RAM value that may be written as one string or a list; always a list after parsing. */
const stringList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((value) => (Array.isArray(value) ? value : [value]));

export const conditionOperators = [
  "StringEquals",
  "StringNotEquals",
  "StringEqualsIgnoreCase",
  "StringNotEqualsIgnoreCase",
  "StringLike",
  "StringNotLike",
] as const;
export type ConditionOperator = (typeof conditionOperators)[number];

const conditionSchema = z.partialRecord(z.enum(conditionOperators), z.record(z.string().min(1), stringList));

const principalSchema = z.union([
  z.literal("*"),
  z.strictObject({ RAM: stringList.optional(), Federated: stringList.optional(), Service: stringList.optional() }),
]);

const effect = z.enum(["Allow", "Deny"]);

export const permissionStatementSchema = z.strictObject({
  Effect: effect,
  Action: stringList,
  Resource: stringList,
  Condition: conditionSchema.optional(),
});

export const trustStatementSchema = z.strictObject({
  Effect: effect,
  Action: stringList,
  Principal: principalSchema,
  Condition: conditionSchema.optional(),
});

export const permissionPolicySchema = z.strictObject({ Version: z.string().optional(), Statement: z.array(permissionStatementSchema).min(1) });
export const trustPolicySchema = z.strictObject({ Version: z.string().optional(), Statement: z.array(trustStatementSchema).min(1) });

export type PermissionPolicy = z.infer<typeof permissionPolicySchema>;
export type TrustPolicy = z.infer<typeof trustPolicySchema>;
export type TrustStatement = z.infer<typeof trustStatementSchema>;
export type Condition = z.infer<typeof conditionSchema>;
export type Decision = "allow" | "deny" | "none";

/** Values a condition can test, keyed by lower-case condition key (`oidc:sub`, `acs:currenttime`). */
export type ConditionContext = Readonly<Record<string, string | readonly string[] | undefined>>;

const patternCache = new Map<string, RegExp>();

/** RAM wildcards: `*` is any run of characters, `?` is one character. */
export function matchesWildcard(pattern: string, value: string, options: { ignoreCase?: boolean } = {}): boolean {
  const key = `${options.ignoreCase === true ? "i" : "s"}:${pattern}`;
  let regex = patternCache.get(key);
  if (regex === undefined) {
    const source = pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".");
    regex = new RegExp(`^${source}$`, options.ignoreCase === true ? "is" : "s");
    if (patternCache.size > 10_000) patternCache.clear();
    patternCache.set(key, regex);
  }
  return regex.test(value);
}

function contextValues(context: ConditionContext, key: string): readonly string[] {
  const value = context[key.toLowerCase()];
  if (value === undefined) return [];
  return typeof value === "string" ? [value] : value;
}

function operatorHolds(operator: ConditionOperator, actual: readonly string[], expected: readonly string[]): boolean {
  const any = (test: (a: string, e: string) => boolean) => actual.some((a) => expected.some((e) => test(a, e)));
  switch (operator) {
    case "StringEquals":
      return any((a, e) => a === e);
    case "StringNotEquals":
      return !any((a, e) => a === e);
    case "StringEqualsIgnoreCase":
      return any((a, e) => a.toLowerCase() === e.toLowerCase());
    case "StringNotEqualsIgnoreCase":
      return !any((a, e) => a.toLowerCase() === e.toLowerCase());
    case "StringLike":
      return any((a, e) => matchesWildcard(e, a));
    case "StringNotLike":
      return !any((a, e) => matchesWildcard(e, a));
  }
}

/** A Condition block as written (one value or a list per key) or as parsed. */
export type ConditionBlock = Partial<Record<ConditionOperator, Record<string, string | readonly string[]>>>;

/** Every operator and every key of a Condition block must hold; a missing key fails the positive operators. */
export function conditionHolds(condition: ConditionBlock | undefined, context: ConditionContext): boolean {
  if (condition === undefined) return true;
  for (const [operator, entries] of Object.entries(condition) as [ConditionOperator, Record<string, string | readonly string[]>][]) {
    for (const [key, expected] of Object.entries(entries)) {
      if (!operatorHolds(operator, contextValues(context, key), typeof expected === "string" ? [expected] : expected)) return false;
    }
  }
  return true;
}

export interface PermissionRequest {
  /** `cr:GetAuthorizationToken`; actions match case-insensitively, as in RAM. */
  action: string;
  /** `acs:cr:cn-hangzhou:1000000000000001:instance/cri-demo` */
  resource: string;
  context?: ConditionContext;
}

/** RAM evaluation over a set of policies: an explicit Deny wins, then any Allow, else no decision. */
export function evaluatePermission(policies: readonly PermissionPolicy[], request: PermissionRequest): Decision {
  let decision: Decision = "none";
  for (const policy of policies) {
    for (const statement of policy.Statement) {
      if (!statement.Action.some((pattern) => matchesWildcard(pattern, request.action, { ignoreCase: true }))) continue;
      if (!statement.Resource.some((pattern) => matchesWildcard(pattern, request.resource))) continue;
      if (!conditionHolds(statement.Condition, request.context ?? {})) continue;
      if (statement.Effect === "Deny") return "deny";
      decision = "allow";
    }
  }
  return decision;
}
