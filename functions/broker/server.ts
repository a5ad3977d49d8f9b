/**
 * The broker as an HTTP server: node:http requests go straight to the API's routes and business
 * functions (http-api.ts, broker.ts), with no FC event built and no middleware chain on the way.
 * `acr-credential broker`, the sandbox and the custom-runtime artefact (server-main.ts) serve with it;
 * the FC built-in runtime answers the same API through handler.ts.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { identityFromKeys, type Identity } from "../../shared/alibaba/identity.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { monotonicNow } from "../../shared/retry.ts";
import { callerContext, renew, type CallerContext, type RequestAnnotations } from "./broker.ts";
import { parseInvocation } from "./fc-event.ts";
import { answerHttp, errorResult, logRequest, maxBodyBytes, payloadTooLarge, requestDeadline, responseHeaders, type HttpResult } from "./http-api.ts";
import { decodedPath, listen, plainPath, serverLimits, transportLimitBytes, type BrokerServer } from "./node-http.ts";
import type { BrokerRuntime } from "./runtime.ts";

export interface HttpServerOptions {
  /** The broker's identity upstream; by default the runtime's. */
  baseIdentity?: Identity;
  /** A function timeout (s) to stay within, as on FC; none by default. */
  functionTimeoutSeconds?: number;
  /** Where request lines go; by default the runtime's logger. */
  log?: Logger;
  /**
   * Behind Function Compute (the custom-runtime artefact only), where FC sets `x-fc-*` request headers
   * itself and refuses them from HTTP clients:
   * - event invocations (InvokeFunction, e.g. `acr-credential renew`) arrive as `POST /invoke` with
   *   `x-fc-control-path: /invoke`, and are answered;
   * - each request carries the execution role's current keys (`x-fc-access-key-id`, `-secret`,
   *   `x-fc-security-token`), used in preference to the ones the process started with, which FC
   *   renews only for new instances while a busy instance lives on.
   */
  functionCompute?: boolean;
}

/** The execution role's keys FC passes with a custom-runtime request, if it did. */
function roleKeysOf(req: IncomingMessage): Identity | undefined {
  const accessKeyId = req.headers["x-fc-access-key-id"];
  const accessKeySecret = req.headers["x-fc-access-key-secret"];
  const securityToken = req.headers["x-fc-security-token"];
  if (typeof accessKeyId !== "string" || typeof accessKeySecret !== "string" || accessKeyId === "" || accessKeySecret === "") return undefined;
  return identityFromKeys({ accessKeyId, accessKeySecret, ...(typeof securityToken === "string" && securityToken !== "" ? { securityToken } : {}) });
}

/** The decoded path as FC's `requestContext.http.path` has it; a malformed escape stays as sent (no route matches it). */
function pathOf(url: string): string {
  if (plainPath.test(url)) return url;
  try {
    return decodedPath(new URL(url, "http://broker.local").pathname);
  } catch {
    return url;
  }
}

/**
 * The Authorization header as FC passes it: node keeps only the first of repeated ones, FC joins
 * them with commas (which no single token survives). Both transports must refuse the same requests.
 */
function authorizationOf(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  let joined: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === "authorization") joined = joined === undefined ? raw[i + 1]! : `${joined},${raw[i + 1]!}`;
  }
  return joined;
}

/** Bodies already serialised: a remembered answer (answer-memo.ts) is the same object each time. */
const serialised = new WeakMap<object, Buffer>();

function serialise(body: unknown): Buffer {
  if (typeof body !== "object" || body === null) return Buffer.from(JSON.stringify(body));
  let bytes = serialised.get(body);
  if (!bytes) serialised.set(body, (bytes = Buffer.from(JSON.stringify(body))));
  return bytes;
}

function send(res: ServerResponse, result: HttpResult, requestId: string, method: string): void {
  const body = serialise(result.body);
  const headers = responseHeaders(requestId, result.headers);
  headers["content-length"] = String(body.length);
  res.writeHead(result.status, headers);
  res.end(method === "HEAD" ? undefined : body);
}

export function createHttpServer(runtime: BrokerRuntime, options: HttpServerOptions): Server {
  const log = options.log ?? runtime.log;
  const base = options.baseIdentity ?? runtime.baseIdentity;
  if (!base) throw new AcrCredentialError("Internal", "the broker's HTTP server needs the broker's own identity");
  const baseFor = (req: IncomingMessage): Identity => (options.functionCompute === true ? (roleKeysOf(req) ?? base) : base);

  const answer = async (
    req: IncomingMessage,
    path: string,
    body: Buffer,
    size: number,
    requestId: string,
    annotations: RequestAnnotations,
  ): Promise<HttpResult> => {
    try {
      if (size > maxBodyBytes) throw payloadTooLarge(size);
      const caller = (): CallerContext =>
        callerContext(log, requestId, {
          base: baseFor(req),
          deadline: requestDeadline(runtime, options.functionTimeoutSeconds),
          annotate: (fields) => Object.assign(annotations, fields),
        });
      return await answerHttp(runtime, { method: req.method ?? "GET", path, authorization: authorizationOf(req), body }, caller);
    } catch (error) {
      return errorResult(error, requestId, log);
    }
  };

  /** An event invocation: `{"action":"renew"}` answered with the renew summary, or `{"error":…}`, as the FC handler answers it. */
  const invoke = async (req: IncomingMessage, body: Buffer, requestId: string, annotations: RequestAnnotations): Promise<HttpResult> => {
    try {
      const invocation = parseInvocation(body);
      if (invocation.kind !== "renew") throw new AcrCredentialError("InvalidRequest", 'an invocation must be {"action":"renew","cluster":"NAME"}');
      const caller = callerContext(log, requestId, {
        base: baseFor(req),
        deadline: requestDeadline(runtime, options.functionTimeoutSeconds),
        annotate: (fields: RequestAnnotations) => Object.assign(annotations, fields),
      });
      return { status: 200, body: { clusters: await renew(runtime, invocation.cluster, caller) } };
    } catch (error) {
      // FC hands the body back to the caller as the function's result; the error is in it.
      return { ...errorResult(error, requestId, log), status: 200 };
    }
  };
  const isInvocation = (req: IncomingMessage, path: string) =>
    options.functionCompute === true && path === "/invoke" && req.method === "POST" && req.headers["x-fc-control-path"] === "/invoke";

  return createServer(serverLimits, (req, res) => {
    const requestId = randomUUID();
    const startedAt = monotonicNow();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      // Past the API's limit the body is only counted, for the 413's message; past the transport's, the connection goes.
      if (size <= maxBodyBytes) chunks.push(chunk);
      else if (size > transportLimitBytes) {
        if (!res.headersSent)
          send(
            res,
            errorResult(new AcrCredentialError("PayloadTooLarge", `the body is larger than ${transportLimitBytes} bytes`), requestId, log),
            requestId,
            "POST",
          );
        req.destroy();
      }
    });
    req.on("end", () => {
      if (size > transportLimitBytes) return;
      const annotations: RequestAnnotations = {};
      const method = req.method ?? "GET";
      const path = pathOf(req.url ?? "/");
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const finish = (result: HttpResult, what: Record<string, string>) => {
        try {
          send(res, result, requestId, method);
        } catch {
          // The client is gone (or the socket broke): nothing can be answered; the line still records the request.
          res.destroy();
        }
        logRequest(log, { requestId, what, annotations, result, startedAt });
      };
      if (isInvocation(req, path)) {
        void invoke(req, body, requestId, annotations).then((result) => finish(result, { action: "invoke" }));
        return;
      }
      void answer(req, path, body, size, requestId, annotations).then((result) => finish(result, { method, path }));
    });
    req.on("error", () => res.destroy());
  });
}

/** Starts the server; resolves once it listens. Port 0 picks a free port. */
export function serveHttp(runtime: BrokerRuntime, options: HttpServerOptions & { port: number; host?: string }): Promise<BrokerServer> {
  return listen(createHttpServer(runtime, options), options.port, options.host ?? "127.0.0.1");
}
