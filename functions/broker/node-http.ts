/**
 * Serves an FC handler over `node:http` through the very same code path: each request becomes an
 * FC 3.0 HTTP-trigger event, and the handler's FC response becomes the HTTP response. The event is
 * handed over as the object FC's Buffer would parse into, which the handler accepts as well, so the
 * event is not serialised only to be parsed back in the same process.
 * For running the built-in-runtime handler over HTTP (benchmarks, tests); the broker's own server,
 * which answers without the event shape, is `server.ts`. Both share the limits and `listen` here.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";
import type { FcContext, FcHttpEvent, FcHttpResponse } from "./fc-event.ts";

export type FcHandler = (event: Buffer | FcHttpEvent, context: FcContext) => Promise<unknown>;

/** Bodies beyond this are refused here; the handler applies the API's own, smaller limit. */
export const transportLimitBytes = 1024 * 1024;

/**
 * Slow clients: headers within 10 s and the whole request within 30 s, checked every second.
 * node's defaults (60 s and 5 min, checked every 30 s) let a few dribbling sockets hold the broker for minutes.
 */
export const serverLimits = { headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 1_000 };

function joinHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  // Repeated headers keep the first spelling of the name, as FC does; the lower-cased index avoids a scan per header.
  const spelling = new Map<string, string>();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const value = req.rawHeaders[i + 1]!;
    const lower = name.toLowerCase();
    const existing = spelling.get(lower);
    if (existing !== undefined) headers[existing] = `${headers[existing]},${value}`;
    else {
      spelling.set(lower, name);
      headers[name] = value;
    }
  }
  return headers;
}

/** Paths that `new URL` would return unchanged: no dot segments, escapes, empty segments or query. */
export const plainPath = /^(?:\/[A-Za-z0-9_-]+)+$/;

// A malformed escape (`%C0%AE`) must not throw in the request callback, which would end the process:
// the path is then passed on as sent, and no route matches it.
export function decodedPath(pathname: string): string {
  try {
    return decodeURIComponent(pathname);
  } catch {
    return pathname;
  }
}

/** The FC 3.0 HTTP-trigger event for a node request (text bodies as text, others base64, as FC does). */
export function toFcEvent(req: IncomingMessage, body: Buffer, requestId: string): FcHttpEvent {
  const queryParameters: Record<string, string> = {};
  let pathname = req.url ?? "/";
  if (!plainPath.test(pathname)) {
    const url = new URL(pathname, "http://broker.local");
    pathname = url.pathname;
    for (const [key, value] of url.searchParams) queryParameters[key] = key in queryParameters ? `${queryParameters[key]},${value}` : value;
  }
  const text = body.toString("utf8");
  const isText = Buffer.byteLength(text) === body.length && !text.includes("\uFFFD");
  const now = new Date();
  const event: FcHttpEvent = {
    version: "v1",
    rawPath: pathname,
    body: isText ? text : body.toString("base64"),
    isBase64Encoded: !isText,
    headers: joinHeaders(req),
    queryParameters,
    requestContext: {
      requestId,
      http: {
        method: req.method ?? "GET",
        path: decodedPath(pathname),
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? "",
        userAgent: req.headers["user-agent"] ?? "",
      },
      time: `${now.toISOString().slice(0, 19)}Z`,
      timeEpoch: String(now.getTime()),
    },
  };
  return event;
}

function send(res: ServerResponse, response: FcHttpResponse): void {
  const body = Buffer.from(response.body ?? "", response.isBase64Encoded ? "base64" : "utf8");
  res.writeHead(response.statusCode, { ...response.headers, "content-length": String(body.length) });
  res.end(body);
}

function plainError(res: ServerResponse, status: number, code: string, message: string, requestId: string): void {
  send(res, {
    statusCode: status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", "x-request-id": requestId },
    body: JSON.stringify({ error: { code, message } }),
    isBase64Encoded: false,
  });
}

export interface BrokerServerOptions {
  port: number;
  host?: string;
  /** FC's function timeout (s), passed to the handler as `context.function.timeout`. */
  functionTimeoutSeconds?: number;
}

export interface BrokerServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export function createBrokerServer(handler: FcHandler, options: Pick<BrokerServerOptions, "functionTimeoutSeconds"> = {}): Server {
  return createServer(serverLimits, (req, res) => {
    const requestId = randomUUID();
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > transportLimitBytes) {
        if (!refused) plainError(res, 413, "PayloadTooLarge", `the body is larger than ${transportLimitBytes} bytes`, requestId);
        refused = true;
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (refused) return;
      const context: FcContext = {
        requestId,
        function: { name: "broker", ...(options.functionTimeoutSeconds ? { timeout: options.functionTimeoutSeconds } : {}) },
      };
      handler(toFcEvent(req, Buffer.concat(chunks), requestId), context).then(
        (response) => send(res, response as FcHttpResponse),
        () => plainError(res, 500, "Internal", "internal error", requestId),
      );
    });
    req.on("error", () => res.destroy());
  });
}

/** Starts the server; resolves once it listens. Port 0 picks a free port. */
export function serveBroker(handler: FcHandler, options: BrokerServerOptions): Promise<BrokerServer> {
  return listen(createBrokerServer(handler, options), options.port, options.host ?? "127.0.0.1");
}

/** Listens on host:port; a port in use is a one-line UsageError. */
export async function listen(server: Server, port: number, host: string): Promise<BrokerServer> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        new AcrCredentialError(
          "UsageError",
          `cannot listen on ${host}:${port} (${error.code ?? oneLine(error)}); choose another --port, or 0 for any free port`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  return {
    server,
    url: `http://${shown.includes(":") ? `[${shown}]` : shown}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
