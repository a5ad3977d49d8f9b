import type CredentialsPackage from "@alicloud/credentials";

/** An access key (a RAM user's, or an STS session's with its security token). */
export interface AccessKey {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken?: string;
}

/** STS credentials with their expiry (epoch ms). */
export interface StsSession extends AccessKey {
  securityToken: string;
  expiresAt: number;
}

/** An `@alicloud/credentials` client (e.g. the default chain); it refreshes itself. */
export type CredentialProvider = InstanceType<typeof CredentialsPackage.default>;

/**
 * Who calls Alibaba Cloud: fixed keys (the FC execution role's `context.credentials`, an STS
 * session of the chain, a sandbox user) or a self-refreshing provider (the default chain).
 */
export type Identity = { kind: "keys"; keys: AccessKey } | { kind: "provider"; provider: CredentialProvider };

export const identityFromKeys = (keys: AccessKey): Identity => ({ kind: "keys", keys });

/** Alibaba Cloud API endpoints: host[:port] without a scheme, as the SDKs expect. */
export interface Endpoints {
  stsEndpoint: string;
  /** `{regionId}` is replaced by the registry's region. */
  crEndpoint: string;
  protocol: "https" | "http";
}

export const publicEndpoints: Endpoints = { stsEndpoint: "sts.aliyuncs.com", crEndpoint: "cr.{regionId}.aliyuncs.com", protocol: "https" };

/** Per-call limits: the SDK request gives up after `timeoutMs`. */
export interface CallOptions {
  timeoutMs: number;
}
