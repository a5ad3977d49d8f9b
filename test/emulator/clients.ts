import StsModule, * as $Sts from "@alicloud/sts20150401";
import OpenApiModule, { $OpenApiUtil, OpenApiUtil as OpenApiUtilModule } from "@alicloud/openapi-core";
import * as $dara from "@darabonba/typescript";
import { createRequire } from "node:module";

/**
 * The real Alibaba Cloud SDK clients, pointed at the emulator. The SDKs are CommonJS with
 * `exports.default`: Node's ESM loader shows it one level down, vitest's interop does not.
 */
function defaultExport<T extends { default: unknown }>(module: T): T["default"] {
  return typeof module === "function" ? (module as unknown as T["default"]) : module.default;
}

const Sts = defaultExport(StsModule);
const OpenApi = defaultExport(OpenApiModule);
const OpenApiUtil = defaultExport(OpenApiUtilModule as unknown as { default: typeof OpenApiUtilModule });
const Fc = createRequire(import.meta.url)("@alicloud/fc2") as new (accountId: string, config: Record<string, unknown>) => FcClient;

export interface AccessKey {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken?: string;
}

function config(endpoint: string, key: AccessKey) {
  return new $OpenApiUtil.Config({ ...key, endpoint, protocol: "http", regionId: "cn-hangzhou" });
}

export function stsClient(endpoint: string, key: AccessKey) {
  return new Sts(config(endpoint, key));
}

/** An unauthenticated STS client for AssumeRoleWithOIDC. */
export function anonymousStsClient(endpoint: string) {
  return new Sts(new $OpenApiUtil.Config({ endpoint, protocol: "http", regionId: "cn-hangzhou" }));
}

export async function assumeRole(
  endpoint: string,
  key: AccessKey,
  request: { RoleArn: string; RoleSessionName: string; DurationSeconds?: number; Policy?: string; ExternalId?: string },
) {
  const response = await stsClient(endpoint, key).assumeRole(
    new $Sts.AssumeRoleRequest({
      roleArn: request.RoleArn,
      roleSessionName: request.RoleSessionName,
      durationSeconds: request.DurationSeconds,
      policy: request.Policy,
      externalId: request.ExternalId,
    }),
  );
  return response.body!;
}

/** Credentials of an AssumeRole/AssumeRoleWithOIDC answer, as an access key. */
export function sessionKey(body: { credentials?: { accessKeyId?: string; accessKeySecret?: string; securityToken?: string } }): AccessKey {
  const c = body.credentials!;
  return { accessKeyId: c.accessKeyId!, accessKeySecret: c.accessKeySecret!, securityToken: c.securityToken! };
}

/** CR 2018-12-01 through `callApi` with the parameters a generated client uses. */
export async function crCall(
  endpoint: string,
  key: AccessKey,
  action: string,
  query: Record<string, unknown>,
  headers: Record<string, string> = {},
  options: { readTimeout?: number } = {},
) {
  const client = new OpenApi(new $OpenApiUtil.Config({ ...key, endpoint, protocol: "http", regionId: "cn-hangzhou", ...options }));
  // Written out from the generated client rather than imported from shared/alibaba/cr.ts: the emulator
  // is held to the SDK's parameters, not to the product's copy of them.
  const params = new $OpenApiUtil.Params({
    action,
    version: "2018-12-01",
    protocol: "HTTPS",
    pathname: "/",
    method: "POST",
    authType: "AK",
    style: "RPC",
    reqBodyType: "formData",
    bodyType: "json",
  });
  const response = await client.callApi(params, new $OpenApiUtil.OpenApiRequest({ query: OpenApiUtil.query(query), headers }), new $dara.RuntimeOptions({}));
  return response.body as Record<string, unknown>;
}

/** CR 2016-06-07 `GET /tokens` (Personal Edition); the SDK hands the body back as a string. */
export async function personalToken(endpoint: string, key: AccessKey) {
  const client = new OpenApi(config(endpoint, key));
  const params = new $OpenApiUtil.Params({
    action: "GetAuthorizationToken",
    version: "2016-06-07",
    protocol: "HTTPS",
    pathname: "/tokens",
    method: "GET",
    authType: "AK",
    style: "ROA",
    reqBodyType: "json",
    bodyType: "none",
  });
  const response = await client.callApi(params, new $OpenApiUtil.OpenApiRequest({}), new $dara.RuntimeOptions({}));
  return response.body as unknown;
}

export interface FcClient {
  invokeFunction(
    service: string,
    fn: string,
    event: string | Buffer,
    headers?: Record<string, string>,
    qualifier?: string,
    opts?: Record<string, unknown>,
  ): Promise<{ headers: Record<string, string>; data: unknown }>;
}

export function fcClient(endpoint: string, accountId: string, key: AccessKey): FcClient {
  return new Fc(accountId, {
    accessKeyID: key.accessKeyId,
    accessKeySecret: key.accessKeySecret,
    securityToken: key.securityToken,
    region: "cn-hangzhou",
    endpoint,
    timeout: 10_000,
  });
}

/** The error an SDK call rejected with, for assertions on `code` and `statusCode`. */
export async function failure(
  promise: Promise<unknown>,
): Promise<{ code?: string; statusCode?: number; message: string; name: string; data?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; statusCode?: number; message: string; name: string };
  }
  throw new Error("expected the call to fail, but it succeeded");
}
