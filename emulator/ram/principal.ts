import { assumedRoleArn, roleArn, userArn } from "./arn.ts";
import { evaluatePermission, type ConditionContext, type PermissionPolicy } from "./policy.ts";

/** A caller that proved itself with an access key: a RAM user, or an STS session of a role. */
export type Principal = UserPrincipal | SessionPrincipal;

export interface UserPrincipal {
  kind: "user";
  account: string;
  userName: string;
  policies: readonly PermissionPolicy[];
}

export interface SessionPrincipal {
  kind: "assumed-role";
  account: string;
  roleName: string;
  sessionName: string;
  policies: readonly PermissionPolicy[];
  /** The `Policy` passed to AssumeRole: the session may do only what both allow. */
  sessionPolicy?: PermissionPolicy;
  /** Epoch ms on the emulator clock. */
  expiresAt: number;
}

/** The ARN a principal is known by in logs and in GetCallerIdentity. */
export function principalArn(principal: Principal): string {
  return principal.kind === "user"
    ? userArn(principal.account, principal.userName)
    : assumedRoleArn(principal.account, principal.roleName, principal.sessionName);
}

/** The ARNs a trust policy's `RAM` principal can name to admit this caller. */
export function trustIdentity(principal: Principal): string {
  return principal.kind === "user" ? userArn(principal.account, principal.userName) : roleArn(principal.account, principal.roleName);
}

/** Whether the principal's own policies (and its session policy, if any) allow `action` on `resource`. */
export function isAllowed(principal: Principal, action: string, resource: string, context?: ConditionContext): boolean {
  const request = { action, resource, ...(context === undefined ? {} : { context }) };
  if (evaluatePermission(principal.policies, request) !== "allow") return false;
  return principal.kind === "user" || principal.sessionPolicy === undefined || evaluatePermission([principal.sessionPolicy], request) === "allow";
}
