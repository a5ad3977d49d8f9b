import { connect } from "node:net";

/**
 * HTTP/1.1 written byte for byte, so a test can send what no well-behaved client would: repeated
 * headers, odd schemes, lying lengths. One request per connection (`Connection: close`).
 */
export interface RawAnswer {
  /** 0 when the server closed the connection without an answer. */
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function rawRequest(
  baseUrl: string,
  request: { method?: string; path?: string; headers?: Array<[string, string]>; body?: string | Buffer; timeoutMs?: number },
): Promise<RawAnswer> {
  const { hostname, port } = new URL(baseUrl);
  const body = request.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(request.body) ? request.body : Buffer.from(request.body);
  const headers: Array<[string, string]> = [["Host", `${hostname}:${port}`], ["Connection", "close"], ...(request.headers ?? [])];
  if (!headers.some(([name]) => name.toLowerCase() === "content-length" || name.toLowerCase() === "transfer-encoding"))
    headers.push(["Content-Length", String(body.length)]);
  const head = `${request.method ?? "POST"} ${request.path ?? "/v1/credentials"} HTTP/1.1\r\n${headers.map(([name, value]) => `${name}: ${value}\r\n`).join("")}\r\n`;
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${request.timeoutMs ?? 10_000} ms`));
    }, request.timeoutMs ?? 10_000);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(parseAnswer(Buffer.concat(chunks).toString("utf8")));
    });
    socket.write(Buffer.concat([Buffer.from(head, "latin1"), body]));
  });
}

export function parseAnswer(text: string): RawAnswer {
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!match) return { status: 0, headers: {}, body: text };
  const [head = "", ...rest] = text.split("\r\n\r\n");
  const headers: Record<string, string> = {};
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(match[1]), headers, body: rest.join("\r\n\r\n") };
}
