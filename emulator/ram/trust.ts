import { accountRootArn } from "./arn.ts";
import { conditionHolds, matchesWildcard, type ConditionContext, type TrustPolicy, type TrustStatement } from "./policy.ts";

/** Who is asking to assume a role, as a trust policy sees it. */
export type TrustCaller =
  /** A RAM user or role session; `identity` is `acs:ram::<account>:user/<name>` or `...:role/<name>`. */
  | { kind: "ram"; account: string; identity: string }
  /** A token holder federated through an OIDC provider. */
  | { kind: "federated"; providerArn: string }
  /** A cloud service acting for an account, e.g. Function Compute for a function's execution role. */
  | { kind: "service"; service: string; account: string };

function principalMatches(statement: TrustStatement, caller: TrustCaller): boolean {
  const principal = statement.Principal;
  if (principal === "*") return caller.kind === "ram";
  switch (caller.kind) {
    case "ram":
      return (principal.RAM ?? []).some(
        (entry) =>
          entry === "*" ||
          entry === caller.account ||
          entry.toLowerCase() === accountRootArn(caller.account) ||
          matchesWildcard(entry, caller.identity, { ignoreCase: true }),
      );
    case "federated":
      return (principal.Federated ?? []).some((entry) => matchesWildcard(entry, caller.providerArn, { ignoreCase: true }));
    case "service":
      return (principal.Service ?? []).some((entry) => {
        const lower = entry.toLowerCase();
        return lower === caller.service || lower === `${caller.account}@${caller.service}`;
      });
  }
}

/**
 * Whether a role's trust policy lets `caller` assume it: some Allow statement for `sts:AssumeRole`
 * names the caller and its conditions hold, and no such Deny statement does.
 */
export function trustAllows(policy: TrustPolicy, caller: TrustCaller, context: ConditionContext = {}): boolean {
  let allowed = false;
  for (const statement of policy.Statement) {
    if (!statement.Action.some((action) => matchesWildcard(action, "sts:AssumeRole", { ignoreCase: true }))) continue;
    if (!principalMatches(statement, caller)) continue;
    if (!conditionHolds(statement.Condition, context)) continue;
    if (statement.Effect === "Deny") return false;
    allowed = true;
  }
  return allowed;
}
