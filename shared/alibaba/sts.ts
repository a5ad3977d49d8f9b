/** STS 2015-04-01 through `@alicloud/sts20150401`. */
import * as StsPackage from "@alicloud/sts20150401";
import { AcrCredentialError } from "../errors.ts";
import type { CallOptions, Endpoints, Identity, StsSession } from "./identity.ts";
import { cjsDefault, runtimeOptions, sdkConfig } from "./sdk.ts";
import { toUpstreamError, type RefusalHint } from "./upstream-error.ts";

const Sts = cjsDefault<typeof StsPackage.default.default>(StsPackage.default);

export interface AssumeRoleInput {
  roleArn: string;
  durationSeconds: number;
  sessionName: string;
}

export interface AssumeRoleWithOidcInput {
  roleArn: string;
  oidcProviderArn: string;
  oidcToken: string;
  sessionName: string;
  durationSeconds?: number;
}

function toSession(
  credentials: { accessKeyId?: string; accessKeySecret?: string; securityToken?: string; expiration?: string } | undefined,
  operation: string,
): StsSession {
  const expiresAt = Date.parse(credentials?.expiration ?? "");
  if (!credentials?.accessKeyId || !credentials.accessKeySecret || !credentials.securityToken || Number.isNaN(expiresAt)) {
    throw new AcrCredentialError("UpstreamError", `${operation}: the response has no complete Credentials`, { details: { retryable: false } });
  }
  return { accessKeyId: credentials.accessKeyId, accessKeySecret: credentials.accessKeySecret, securityToken: credentials.securityToken, expiresAt };
}

/** The longest session STS is known to grant a role session assuming another role (role chaining). */
const chainedSessionSafeSeconds = 3600;

/**
 * `InvalidParameter.DurationSeconds` for more than an hour: either the role's maximum session
 * duration is shorter, or STS caps a session that a role session (the FC execution role) obtains.
 */
const durationHint =
  (durationSeconds: number): RefusalHint =>
  (code) =>
    code === "InvalidParameter.DurationSeconds" && durationSeconds > chainedSessionSafeSeconds
      ? `STS refused a ${durationSeconds} s session: a role session assuming another role (role chaining, e.g. from the Function Compute execution role) may get at most ${chainedSessionSafeSeconds} s, and the role's maximum session duration must be at least ${durationSeconds} s; set expireDuration to ${chainedSessionSafeSeconds} or less for this registry, or give the broker a RAM user's access key as its identity instead of a role (acr-credential broker with ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET; see docs/deploy.md)`
      : code === "InvalidParameter.DurationSeconds"
        ? "set expireDuration within [900, the role's maximum session duration]"
        : undefined;

/** What to change when STS refuses the ServiceAccount's RRSA token. */
const oidcHint: RefusalHint = (code) => {
  switch (code) {
    case "AuthenticationFail.OIDCToken.InvalidSignature":
      return "the RAM OIDC provider does not publish the key that signed the cluster's token (its issuer rotated keys, or the provider points at another cluster); check the provider's issuer URL and fingerprints in RAM";
    case "AuthenticationFail.OIDCToken.Expired":
      return "the RRSA token is expired, or older than the OIDC provider's IssuanceLimitTime (1-168 h, RAM's default 12 h): raise IssuanceLimitTime above the projected token's expirationSeconds, or shorten expirationSeconds";
    case "AuthenticationFail.OIDCToken.AudienceNotMatch":
      return "project the RRSA token with audience sts.aliyuncs.com, a client id of the OIDC provider";
    case "AuthenticationFail.OIDCToken.IssuerNotMatch":
      return "the OIDC provider's issuer URL must equal the token's iss (the cluster's service-account issuer)";
    case "AuthenticationFail.NoPermission":
      return "the OIDC provider ARN must exist and the role's trust policy must admit the token's provider, oidc:aud, oidc:iss and oidc:sub";
    default:
      return undefined;
  }
};

/** `AssumeRole` as `identity` (which must be in the role's trust policy). */
export async function assumeRole(endpoints: Endpoints, identity: Identity, input: AssumeRoleInput, call: CallOptions): Promise<StsSession> {
  const operation = `STS AssumeRole ${input.roleArn}`;
  try {
    const client = new Sts(sdkConfig(endpoints.stsEndpoint, endpoints.protocol, identity));
    const request = new StsPackage.AssumeRoleRequest({ roleArn: input.roleArn, roleSessionName: input.sessionName, durationSeconds: input.durationSeconds });
    const response = await client.assumeRoleWithOptions(request, runtimeOptions(call));
    return toSession(response.body?.credentials, operation);
  } catch (error) {
    throw toUpstreamError(error, operation, durationHint(input.durationSeconds));
  }
}

/** `AssumeRoleWithOIDC`: anonymous; the OIDC token is the proof (ACK RRSA). */
export async function assumeRoleWithOidc(endpoints: Endpoints, input: AssumeRoleWithOidcInput, call: CallOptions): Promise<StsSession> {
  const operation = `STS AssumeRoleWithOIDC ${input.roleArn}`;
  try {
    const client = new Sts(sdkConfig(endpoints.stsEndpoint, endpoints.protocol, undefined));
    const request = new StsPackage.AssumeRoleWithOIDCRequest({
      roleArn: input.roleArn,
      OIDCProviderArn: input.oidcProviderArn,
      OIDCToken: input.oidcToken,
      roleSessionName: input.sessionName,
      durationSeconds: input.durationSeconds,
    });
    const response = await client.assumeRoleWithOIDCWithOptions(request, runtimeOptions(call));
    return toSession(response.body?.credentials, operation);
  } catch (error) {
    throw toUpstreamError(error, operation, (code) => oidcHint(code) ?? durationHint(input.durationSeconds ?? 3600)(code));
  }
}
