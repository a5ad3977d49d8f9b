import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An HTTP server that answers POST /v1/credentials from a script, for faults the real broker cannot
 * produce on demand (a 503 then a 200, a Retry-After, a broken body). It records every request.
 */
export interface ScriptedReply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Close the connection without answering. */
  hangUp?: boolean;
}

export interface RecordedRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

export interface ScriptedBroker {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startScriptedBroker(reply: (request: RecordedRequest, index: number) => ScriptedReply): Promise<ScriptedBroker> {
  const requests: RecordedRequest[] = [];
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    return text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
  };
  const server: Server = createServer(async (req, res) => {
    const recorded: RecordedRequest = { method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, body: await readBody(req) };
    requests.push(recorded);
    const answer = reply(recorded, requests.length - 1);
    if (answer.hangUp === true) {
      req.socket.destroy();
      return;
    }
    res.writeHead(answer.status, { "content-type": "application/json", "cache-control": "no-store", ...answer.headers });
    res.end(typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
