/**
 * One HTTP handler for every emulated API, dispatching on path, action and version:
 * `/healthz`, the registry realm `/auth`, FC `/2023-03-30/...` and `/2016-08-15/...`, CR Personal `GET /tokens`, and the
 * OpenAPI RPC endpoint `/` (STS 2015-04-01, CR 2018-12-01) keyed by `x-acs-action`/`Action`,
 * ACK `GET /clusters/{id}` (CS 2015-12-15) and the ACK clusters' issuers `/oidc-ack-…`.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "pino";
import type { Ack } from "./ack.ts";
import { ApiError, fcErrors, openApiErrors } from "./api-error.ts";
import type { Authenticator } from "./authenticate.ts";
import type { Clock } from "./clock.ts";
import type { Cr } from "./cr.ts";
import type { FaultInjector } from "./faults.ts";
import { parseFc3InvocationPath, parseInvocationPath, type createFunctions, type InvocationResult } from "./fc.ts";
import { principalArn, type Principal } from "./ram/principal.ts";
import type { RequestLog } from "./request-log.ts";
import { parseQuery, type ReceivedRequest } from "./signature/acs3.ts";
import type { Params, Sts } from "./sts.ts";

export interface RouterDeps {
  authenticator: Authenticator;
  sts: Sts;
  cr: Cr;
  ack?: Ack;
  functions: ReturnType<typeof createFunctions>;
  faults: FaultInjector;
  log: RequestLog;
  clock: Clock;
  /** The docker token-auth realm, mounted at `/auth`. */
  realm?: (req: IncomingMessage, res: ServerResponse) => void;
  logger: Logger;
}

interface Call {
  params: Params;
  principal: Principal | undefined;
}

interface Operation {
  api: string;
  product: "sts" | "cr" | "cs";
  /** Anonymous operations (AssumeRoleWithOIDC) are not signed: the token in the parameters is the proof. */
  anonymous?: boolean;
  /** The 2016-06-07 Personal API names its request id `requestId`. */
  requestIdField?: "RequestId" | "requestId";
  resource?(params: Params): string | undefined;
  run(call: Call): object | Promise<object>;
}

const maxBodyBytes = 8 * 1024 * 1024;

function signedIn(call: Call): Principal {
  if (call.principal === undefined) throw new Error("an authenticated operation ran without a principal");
  return call.principal;
}

function operations(deps: RouterDeps): Map<string, Operation> {
  const { sts, cr } = deps;
  const ack = () => {
    if (deps.ack === undefined) throw openApiErrors.actionNotFound("DescribeClusterDetail");
    return deps.ack;
  };
  const instance = (params: Params) => params["InstanceId"];
  const entries: [string, Operation][] = [
    ["2015-04-01/AssumeRole", { api: "sts:AssumeRole", product: "sts", resource: (p) => p["RoleArn"], run: (c) => sts.assumeRole(signedIn(c), c.params) }],
    [
      "2015-04-01/AssumeRoleWithOIDC",
      { api: "sts:AssumeRoleWithOIDC", product: "sts", anonymous: true, resource: (p) => p["RoleArn"], run: (c) => sts.assumeRoleWithOidc(c.params) },
    ],
    ["2015-04-01/GetCallerIdentity", { api: "sts:GetCallerIdentity", product: "sts", run: (c) => sts.getCallerIdentity(signedIn(c)) }],
    [
      "2018-12-01/GetAuthorizationToken",
      { api: "cr:GetAuthorizationToken", product: "cr", resource: instance, run: (c) => cr.getAuthorizationToken(signedIn(c), c.params) },
    ],
    [
      "2018-12-01/ListInstanceEndpoint",
      { api: "cr:ListInstanceEndpoint", product: "cr", resource: instance, run: (c) => cr.listInstanceEndpoint(signedIn(c), c.params) },
    ],
    ["2018-12-01/GetInstance", { api: "cr:GetInstance", product: "cr", resource: instance, run: (c) => cr.getInstance(signedIn(c), c.params) }],
    ["2018-12-01/ListInstance", { api: "cr:ListInstance", product: "cr", run: (c) => cr.listInstance(signedIn(c), c.params) }],
    [
      "2015-12-15/DescribeClusterDetail",
      {
        api: "cs:DescribeClusterDetail",
        product: "cs",
        resource: (p) => p["ClusterId"],
        run: (c) => ack().describeClusterDetail(signedIn(c), c.params["ClusterId"] ?? ""),
      },
    ],
    [
      "GET /tokens",
      { api: "cr:GetPersonalAuthorizationToken", product: "cr", requestIdField: "requestId", run: (c) => cr.personalAuthorizationToken(signedIn(c)) },
    ],
  ];
  return new Map(entries);
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Header names lower-cased with every value, as the signature verifiers need them. */
function headerValues(req: IncomingMessage): Record<string, string[]> {
  const headers: Record<string, string[]> = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = (req.rawHeaders[i] as string).toLowerCase();
    (headers[name] ??= []).push(req.rawHeaders[i + 1] as string);
  }
  return headers;
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: Buffer | string): void {
  res.writeHead(status, { ...headers, "content-length": String(Buffer.byteLength(body)) });
  res.end(body);
}

const hostIds = { sts: "sts.aliyuncs.com", cr: "cr.aliyuncs.com", cs: "cs.aliyuncs.com" } as const;
const productNames = { sts: "Sts", cr: "cr", cs: "CS" } as const;

function openApiErrorBody(error: ApiError, requestId: string, product: "sts" | "cr" | "cs") {
  return {
    RequestId: requestId,
    HostId: hostIds[product],
    Code: error.code,
    Message: error.message,
    Recommend: `https://api.aliyun.com/troubleshoot?q=${encodeURIComponent(error.code)}&product=${productNames[product]}&requestId=${requestId}`,
  };
}

/** The 2016-06-07 Personal API spells its error fields in lower case, as its success body does. */
function roaErrorBody(error: ApiError, requestId: string) {
  return { requestId, code: error.code, message: error.message };
}

export function createRouter(deps: RouterDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const table = operations(deps);

  const record = (entry: { api: string; principal: string; outcome: string; status: number; requestId: string; resource?: string | undefined }) => {
    const { resource, ...rest } = entry;
    deps.log.record({ at: deps.clock.now(), ...rest, ...(resource === undefined ? {} : { resource }) });
    deps.logger.info(entry, "request");
  };

  async function handleOpenApi(req: IncomingMessage, res: ServerResponse, path: string, rawQuery: string, body: Buffer): Promise<void> {
    const requestId = randomUUID().toUpperCase();
    const headers = headerValues(req);
    const query = parseQuery(rawQuery);
    const contentType = headers["content-type"]?.[0] ?? "";
    const form = contentType.startsWith("application/x-www-form-urlencoded") ? parseQuery(body.toString("utf8")) : [];
    const clusterPath = /^\/clusters\/([^/]+)$/.exec(path);
    // ROA puts the cluster id in the path; the operation reads it as a parameter like RPC ones.
    const fromPath: [string, string][] = clusterPath ? [["ClusterId", decodeURIComponent(clusterPath[1]!)]] : [];
    const params: Params = Object.fromEntries([...query, ...form, ...fromPath]);
    const method = req.method ?? "GET";
    const action = headers["x-acs-action"]?.[0] ?? params["Action"];
    const version = headers["x-acs-version"]?.[0] ?? params["Version"];
    const operation =
      path === "/tokens" ? table.get(`${method} /tokens`) : path === "/" || (clusterPath && method === "GET") ? table.get(`${version}/${action}`) : undefined;
    const product = operation?.product ?? (version === "2015-04-01" ? "sts" : version === "2015-12-15" ? "cs" : "cr");
    const api = operation?.api ?? `${product}:${action ?? path}`;
    const received: ReceivedRequest = { method, path, query, headers, body };
    let principal: Principal | undefined;
    try {
      // A signed request for an unknown operation is authenticated first, so a tampered path reads as a bad signature.
      const signed = headers["authorization"] !== undefined;
      if (operation === undefined ? signed : operation.anonymous !== true) principal = deps.authenticator.acs3(received);
      if (operation === undefined) throw openApiErrors.actionNotFound(`${method} ${path} ${action ?? ""} ${version ?? ""}`.trim());
      const fault = deps.faults.decide(operation.api);
      if (fault.delayMs > 0) await delay(fault.delayMs);
      if (fault.kind === "throttle") throw openApiErrors.throttled();
      if (fault.kind === "serverError") throw openApiErrors.serverError(fault.status, fault.code);
      if (fault.kind === "unsuccessful" && operation.product === "cr" && operation.requestIdField === undefined) {
        // CR 2018-12-01 reports some failures in a successful HTTP answer.
        const refusal = { RequestId: requestId, Code: fault.code, IsSuccess: false, ...(fault.message === undefined ? {} : { Message: fault.message }) };
        send(res, 200, { "content-type": "application/json;charset=utf-8", "x-acs-request-id": requestId }, JSON.stringify(refusal));
        record({
          api,
          principal: principal === undefined ? "anonymous" : principalArn(principal),
          outcome: fault.code,
          status: 200,
          requestId,
          resource: operation.resource?.(params),
        });
        return;
      }
      const result = await operation.run({ params, principal });
      send(
        res,
        200,
        { "content-type": "application/json;charset=utf-8", "x-acs-request-id": requestId },
        JSON.stringify({ [operation.requestIdField ?? "RequestId"]: requestId, ...result }),
      );
      record({
        api,
        principal: principal === undefined ? "anonymous" : principalArn(principal),
        outcome: "ok",
        status: 200,
        requestId,
        resource: operation.resource?.(params),
      });
    } catch (thrown) {
      const error = thrown instanceof ApiError ? thrown : openApiErrors.serverError(500, "InternalError");
      if (!(thrown instanceof ApiError)) deps.logger.error({ err: thrown, api, requestId }, "emulator bug");
      const body = operation?.requestIdField === "requestId" ? roaErrorBody(error, requestId) : openApiErrorBody(error, requestId, product);
      send(res, error.status, { "content-type": "application/json;charset=utf-8", "x-acs-request-id": requestId, ...error.headers }, JSON.stringify(body));
      record({
        api,
        principal: principal === undefined ? "anonymous" : principalArn(principal),
        outcome: error.code,
        status: error.status,
        requestId,
        resource: operation?.resource?.(params),
      });
    }
  }

  /**
   * One InvokeFunction, answered and recorded; `run` authenticates (noting the caller on `call`) and
   * invokes. Both FC APIs share this; an error answers in the API's own shape (`errorAnswer`).
   */
  async function answerInvocation(
    res: ServerResponse,
    requestId: string,
    call: { principal?: Principal; resource?: string },
    errorAnswer: (error: ApiError) => { headers?: Record<string, string>; body: object },
    run: () => Promise<InvocationResult>,
  ): Promise<void> {
    try {
      const result = await run();
      send(res, result.status, result.headers, result.body);
      record({
        api: "fc:InvokeFunction",
        principal: principalArn(call.principal!),
        outcome: result.headers["x-fc-error-type"] ?? "ok",
        status: result.status,
        requestId,
        resource: call.resource,
      });
    } catch (thrown) {
      const error = thrown instanceof ApiError ? thrown : new ApiError(500, "InternalServerError", "internal error");
      if (!(thrown instanceof ApiError)) deps.logger.error({ err: thrown, requestId }, "emulator bug");
      const answer = errorAnswer(error);
      send(res, error.status, { "content-type": "application/json", "x-fc-request-id": requestId, ...answer.headers }, JSON.stringify(answer.body));
      record({
        api: "fc:InvokeFunction",
        principal: call.principal === undefined ? "anonymous" : principalArn(call.principal),
        outcome: error.code,
        status: error.status,
        requestId,
        resource: call.resource,
      });
    }
  }

  /** FC 2.0 InvokeFunction (`/services/S/functions/F/invocations`); errors are `{ErrorCode, ErrorMessage}`. */
  async function handleFc(req: IncomingMessage, res: ServerResponse, path: string, rawQuery: string, body: Buffer): Promise<void> {
    const requestId = randomUUID();
    const all = headerValues(req);
    const headers = Object.fromEntries(Object.entries(all).map(([name, values]) => [name, values[0]]));
    const target = parseInvocationPath(path);
    const call: { principal?: Principal; resource?: string } = { resource: target === undefined ? undefined : `${target.service}/${target.functionName}` };
    const errorAnswer = (error: ApiError) => ({ body: { ErrorCode: error.code, ErrorMessage: error.message } });
    await answerInvocation(res, requestId, call, errorAnswer, async () => {
      if (target === undefined || req.method !== "POST") throw fcErrors.pathNotSupported(req.method ?? "", path);
      const principal = (call.principal = deps.authenticator.fc({ method: req.method, path, headers, query: parseQuery(rawQuery), body }));
      const account = headers["x-fc-account-id"];
      if (account === undefined) throw fcErrors.missingHeader("X-Fc-Account-Id");
      const async = headers["x-fc-invocation-type"]?.toLowerCase() === "async";
      return deps.functions.invoke(principal, { account, ...target, async, event: body, requestId });
    });
  }

  /**
   * FC 3.0 InvokeFunction, signed ACS3-HMAC-SHA256 like every 2023-03-30 API. The endpoint's host
   * names the account on the real service; the emulator has one endpoint, so a function is looked
   * up in the caller's own account. Errors have the OpenAPI shape `{Code, Message, RequestId}`.
   */
  async function handleFc3(req: IncomingMessage, res: ServerResponse, path: string, rawQuery: string, body: Buffer): Promise<void> {
    const requestId = randomUUID();
    const headers = headerValues(req);
    const query = parseQuery(rawQuery);
    const target = parseFc3InvocationPath(path);
    const call: { principal?: Principal; resource?: string } = { resource: target === undefined ? undefined : `functions/${target.functionName}` };
    const errorAnswer = (error: ApiError) => ({ headers: error.headers, body: { Code: error.code, Message: error.message, RequestId: requestId } });
    await answerInvocation(res, requestId, call, errorAnswer, async () => {
      const principal = (call.principal = deps.authenticator.acs3({ method: req.method ?? "GET", path, query, headers, body }));
      if (target === undefined || req.method !== "POST") throw fcErrors.pathNotSupported(req.method ?? "", path);
      const qualifier = query.find(([name]) => name === "qualifier")?.[1] ?? "LATEST";
      const async = headers["x-fc-invocation-type"]?.[0]?.toLowerCase() === "async";
      return deps.functions.invoke(principal, { account: principal.account, functionName: target.functionName, qualifier, async, event: body, requestId });
    });
  }

  return (req, res) => {
    const url = req.url ?? "/";
    const mark = url.indexOf("?");
    const path = mark < 0 ? url : url.slice(0, mark);
    const rawQuery = mark < 0 ? "" : url.slice(mark + 1);
    if (path === "/healthz") return send(res, 200, { "content-type": "application/json" }, JSON.stringify({ status: "ok" }));
    if (deps.ack?.serveIssuer(req, res, path)) return;
    if (path === "/auth") {
      if (deps.realm !== undefined) return deps.realm(req, res);
      return send(res, 404, { "content-type": "application/json" }, JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "no registry realm" }] }));
    }
    void (async () => {
      const body = await readBody(req);
      if (body === undefined)
        return send(
          res,
          413,
          { "content-type": "application/json" },
          JSON.stringify({ Code: "EntityTooLarge", Message: `request bodies are limited to ${maxBodyBytes} bytes` }),
        );
      if (path.startsWith("/2016-08-15/")) return handleFc(req, res, path, rawQuery, body);
      if (path.startsWith("/2023-03-30/")) return handleFc3(req, res, path, rawQuery, body);
      return handleOpenApi(req, res, path, rawQuery, body);
    })().catch((error: unknown) => {
      deps.logger.error({ err: error }, "emulator bug");
      if (!res.headersSent) send(res, 500, { "content-type": "application/json" }, JSON.stringify({ Code: "InternalError", Message: "internal error" }));
      else res.destroy();
    });
  };
}
