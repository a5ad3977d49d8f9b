import * as StsPackage from "@alicloud/sts20150401";
import { AcrCredentialError } from "../errors.ts";
import type { CallOptions, Endpoints, Identity, StsSession } from "./identity.ts";
import { cjsDefault, runtimeOptions, sdkConfig } from "./sdk.ts";
import { toUpstreamError } from "./upstream-error.ts";

/** STS 2015-04-01 through `@alicloud/sts20150401`. */

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

function toSession(credentials: { accessKeyId?: string; accessKeySecret?: string; securityToken?: string; expiration?: string } | undefined, operation: string): StsSession {
  const expiresAt = Date.parse(credentials?.expiration ?? "");
  if (!credentials?.accessKeyId || !credentials.accessKeySecret || !credentials.securityToken || Number.isNaN(expiresAt)) {
    throw new AcrCredentialError("UpstreamError", `${operation}: the response has no complete Credentials`, { details: { retryable: false } });
  }
  return { accessKeyId: credentials.accessKeyId, accessKeySecret: credentials.accessKeySecret, securityToken: credentials.securityToken, expiresAt };
}

/** `AssumeRole` as `identity` (which must be in the role's trust policy). */
export async function assumeRole(endpoints: Endpoints, identity: Identity, input: AssumeRoleInput, call: CallOptions): Promise<StsSession> {
  const operation = `STS AssumeRole ${input.roleArn}`;
  try {
    const client = new Sts(sdkConfig(endpoints.stsEndpoint, endpoints.protocol, identity));
    const request = new StsPackage.AssumeRoleRequest({ roleArn: input.roleArn, roleSessionName: input.sessionName, durationSeconds: input.durationSeconds });
    const response = await client.assumeRoleWithOptions(request, runtimeOptions(call));
    return toSession(response.body?.credentials, operation);
  } catch (error) {
    throw toUpstreamError(error, operation);
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
    throw toUpstreamError(error, operation);
  }
}
