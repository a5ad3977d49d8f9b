import { createServer, request, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A man in the middle for signature tests: forwards what the real SDK sends to the emulator,
 * after `mutate` has had its way with the method, path, headers or body.
 */
export interface Exchange {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface TamperProxy {
  /** `host:port`, for `Config.endpoint`. */
  endpoint: string;
  mutate: (exchange: Exchange) => Exchange;
  close(): Promise<void>;
}

export async function startTamperProxy(target: string): Promise<TamperProxy> {
  const [targetHost, targetPort] = target.split(":");
  const proxy: TamperProxy = { endpoint: "", mutate: (exchange) => exchange, close: async () => undefined };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const exchange = proxy.mutate({ method: req.method ?? "GET", path: req.url ?? "/", headers: { ...req.headers }, body: Buffer.concat(chunks) });
      // The body is forwarded whole, so a chunked request (the 2023-03-30 SDKs stream the event) gets a length instead.
      const { "transfer-encoding": _chunked, ...kept } = exchange.headers;
      const headers = { ...kept, "content-length": String(exchange.body.length) };
      const upstream = request({ host: targetHost, port: Number(targetPort), method: exchange.method, path: exchange.path, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on("error", () => res.destroy());
      upstream.end(exchange.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return proxy;
}
