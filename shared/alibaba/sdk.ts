import * as openApiCore from "@alicloud/openapi-core";
import * as dara from "@darabonba/typescript";
import type { CallOptions, Identity } from "./identity.ts";

/**
 * The few `@alicloud/openapi-core` pieces every client here needs. The packages are CommonJS
 * with an `exports.default` class: Node's ESM loader puts it at `default.default`, bundlers and
 * test runners that apply `__esModule` interop at `default`; `cjsDefault` accepts both.
 */
export function cjsDefault<T>(value: unknown): T {
  return (typeof value === "function" ? value : (value as { default: T }).default) as T;
}

export const OpenApi = cjsDefault<typeof openApiCore.default.default>(openApiCore.default);
export const { $OpenApiUtil, OpenApiUtil } = openApiCore;
export type OpenApiConfig = InstanceType<typeof $OpenApiUtil.Config>;

/** SDK `Config` for `endpoint` (host[:port]) with the identity's credentials, if any. */
export function sdkConfig(endpoint: string, protocol: string, identity: Identity | undefined): OpenApiConfig {
  const config = new $OpenApiUtil.Config({ endpoint, protocol });
  if (identity?.kind === "keys") {
    config.accessKeyId = identity.keys.accessKeyId;
    config.accessKeySecret = identity.keys.accessKeySecret;
    if (identity.keys.securityToken) config.securityToken = identity.keys.securityToken;
  } else if (identity?.kind === "provider") {
    config.credential = identity.provider;
  }
  return config;
}

/** Timeouts of one call; the SDK's own retries stay off (retries are ours, within the request deadline). */
export function runtimeOptions(call: CallOptions): InstanceType<typeof dara.RuntimeOptions> {
  const timeout = Math.max(1, Math.floor(call.timeoutMs));
  return new dara.RuntimeOptions({ readTimeout: timeout, connectTimeout: Math.min(timeout, 5000), autoretry: false });
}
