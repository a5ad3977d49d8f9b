/**
 * Container Registry through `@alicloud/openapi-core`'s generic `callApi` with the same `Params`
 * the generated clients use (the CR SDK is not published where this project installs from).
 */
import { AcrCredentialError } from "../errors.ts";
import type { CallOptions, Endpoints, Identity } from "./identity.ts";
import { $OpenApiUtil, OpenApi, OpenApiUtil, runtimeOptions, sdkConfig } from "./sdk.ts";
import { toUpstreamError, unsuccessfulAnswer, type RefusalHint } from "./upstream-error.ts";

/** A temporary registry login: `docker login -u username -p password`. */
export interface RegistryPassword {
  username: string;
  password: string;
  /** Epoch ms. */
  expiresAt: number;
}

export function crEndpointFor(endpoints: Endpoints, regionId: string): string {
  return endpoints.crEndpoint.replaceAll("{regionId}", regionId);
}

const rpc = (action: string) =>
  new $OpenApiUtil.Params({
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

/** One RPC call; every failure, an HTTP 200 with `IsSuccess: false` included, becomes a classified upstream error. */
async function callRpc(
  endpoints: Endpoints,
  identity: Identity,
  regionId: string,
  action: string,
  query: Record<string, unknown>,
  call: CallOptions,
  operation: string,
  hintFor?: RefusalHint,
): Promise<Record<string, unknown>> {
  let body: Record<string, unknown>;
  try {
    const client = new OpenApi(sdkConfig(crEndpointFor(endpoints, regionId), endpoints.protocol, identity));
    const request = new $OpenApiUtil.OpenApiRequest({ query: OpenApiUtil.query(query) });
    const response = (await client.callApi(rpc(action), request, runtimeOptions(call))) as { body?: Record<string, unknown> };
    body = response.body ?? {};
  } catch (error) {
    throw toUpstreamError(error, operation, hintFor);
  }
  if (body.IsSuccess === false) throw unsuccessfulAnswer(body, operation, hintFor);
  return body;
}

/**
 * CR authorises `cr:GetAuthorizationToken` on all resources (`acs:cr:<region>:<account>:*`), so a
 * policy that names an instance never allows it: say so rather than "grant this permission".
 */
const tokenPermissionHint: RefusalHint = (code) =>
  code !== undefined && /NoPrivilege|NoPermission|AccessDenied|Forbidden/i.test(code)
    ? `the identity needs cr:GetAuthorizationToken on Resource "*" (or acs:cr:<region>:<account>:*): CR does not authorise it per instance, so a policy naming instance/<id> never allows it (see docs/deploy.md)`
    : undefined;

function incomplete(operation: string): AcrCredentialError {
  return new AcrCredentialError("UpstreamError", `${operation}: the response lacks the temporary username, password or expiry`, {
    details: { retryable: false },
  });
}

/** Enterprise Edition: CR 2018-12-01 `GetAuthorizationToken(InstanceId)`. */
export async function getAuthorizationToken(
  endpoints: Endpoints,
  identity: Identity,
  target: { instanceId: string; regionId: string },
  call: CallOptions,
): Promise<RegistryPassword> {
  const operation = `CR GetAuthorizationToken ${target.instanceId} (${target.regionId})`;
  const body = await callRpc(
    endpoints,
    identity,
    target.regionId,
    "GetAuthorizationToken",
    { InstanceId: target.instanceId },
    call,
    operation,
    tokenPermissionHint,
  );
  const expiresAt = Number(body.ExpireTime);
  if (typeof body.TempUsername !== "string" || typeof body.AuthorizationToken !== "string" || !Number.isFinite(expiresAt)) throw incomplete(operation);
  return { username: body.TempUsername, password: body.AuthorizationToken, expiresAt };
}

/** Enterprise Edition: every enabled registry endpoint's domains, from `ListInstanceEndpoint`. */
export async function listInstanceDomains(
  endpoints: Endpoints,
  identity: Identity,
  target: { instanceId: string; regionId: string },
  call: CallOptions,
): Promise<string[]> {
  const operation = `CR ListInstanceEndpoint ${target.instanceId} (${target.regionId})`;
  const body = await callRpc(
    endpoints,
    identity,
    target.regionId,
    "ListInstanceEndpoint",
    { InstanceId: target.instanceId, ModuleName: "Registry", Summary: true },
    call,
    operation,
  );
  const list = Array.isArray(body.Endpoints) ? (body.Endpoints as Array<{ Enable?: unknown; Domains?: Array<{ Domain?: unknown }> }>) : [];
  const domains = list
    .filter((endpoint) => endpoint.Enable !== false)
    .flatMap((endpoint) => (endpoint.Domains ?? []).map((d) => d.Domain))
    .filter((d): d is string => typeof d === "string" && d.length > 0);
  return [...new Set(domains)];
}

/** `USER_NOT_EXIST`: the identity never set a Personal Edition registry password, which only the console does. */
const personalHint: RefusalHint = (code) =>
  code === "USER_NOT_EXIST"
    ? "the broker's identity (the RAM user, or the role of the entry) has never set a Container Registry Personal Edition password: sign in to the Container Registry console once as that identity and set the registry password (Personal Edition instance > Access Credential > Set Password), then retry; or use an Enterprise Edition instance"
    : tokenPermissionHint(code);

const personalTokens = new $OpenApiUtil.Params({
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

/** Personal Edition: CR 2016-06-07 `GET /tokens` (ROA; the body comes back as a string). */
export async function getPersonalAuthorizationToken(
  endpoints: Endpoints,
  identity: Identity,
  target: { regionId: string },
  call: CallOptions,
): Promise<RegistryPassword> {
  const operation = `CR GetAuthorizationToken (Personal Edition, ${target.regionId})`;
  let data: { tempUserName?: unknown; authorizationToken?: unknown; expireDate?: unknown } | undefined;
  try {
    const client = new OpenApi(sdkConfig(crEndpointFor(endpoints, target.regionId), endpoints.protocol, identity));
    const response = (await client.callApi(personalTokens, new $OpenApiUtil.OpenApiRequest({}), runtimeOptions(call))) as { body?: unknown };
    const parsed = (typeof response.body === "string" ? JSON.parse(response.body) : response.body) as { data?: typeof data };
    data = parsed.data;
  } catch (error) {
    throw toUpstreamError(error, operation, personalHint);
  }
  const expiresAt = Number(data?.expireDate);
  if (typeof data?.tempUserName !== "string" || typeof data.authorizationToken !== "string" || !Number.isFinite(expiresAt)) throw incomplete(operation);
  return { username: data.tempUserName, password: data.authorizationToken, expiresAt };
}
