/** RAM ARN shapes. Role and provider names compare case-insensitively, as RAM stores them lower-cased in ARNs. */
import { oidcProviderArnPattern, roleArnPattern } from "../../shared/alibaba/names.ts";

export const accountIdPattern = /^\d{16}$/;

export interface RoleArn {
  account: string;
  role: string;
}

export function parseRoleArn(arn: string): RoleArn | undefined {
  const match = roleArnPattern.exec(arn);
  return match === null ? undefined : { account: match[1] as string, role: (match[2] as string).toLowerCase() };
}

export function parseOidcProviderArn(arn: string): { account: string; provider: string } | undefined {
  const match = oidcProviderArnPattern.exec(arn);
  return match === null ? undefined : { account: match[1] as string, provider: (match[2] as string).toLowerCase() };
}

export const roleArn = (account: string, role: string) => `acs:ram::${account}:role/${role.toLowerCase()}`;
export const userArn = (account: string, user: string) => `acs:ram::${account}:user/${user}`;
export const accountRootArn = (account: string) => `acs:ram::${account}:root`;
export const oidcProviderArn = (account: string, provider: string) => `acs:ram::${account}:oidc-provider/${provider}`;
/** The ARN STS returns in `AssumedRoleUser.Arn`. */
export const assumedRoleUserArn = (account: string, role: string, session: string) => `acs:ram::${account}:role/${role.toLowerCase()}/${session}`;
/** The caller ARN of an STS session, as the request log and GetCallerIdentity name it. */
export const assumedRoleArn = (account: string, role: string, session: string) => `acs:ram::${account}:assumed-role/${role.toLowerCase()}/${session}`;
