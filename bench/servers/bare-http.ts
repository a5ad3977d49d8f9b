import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The baseline the broker is compared with: a bare node:http server that reads the request body
 * and answers with a JSON body of the given size and the same headers the broker sends. Started
 * in a process of its own: `node --import tsx bench/servers/bare-http.ts BYTES`.
 */
const size = Number(process.argv[2]);
if (!Number.isInteger(size) || size < 16) {
  console.error("usage: bare-http.ts BYTES (at least 16)");
  process.exit(2);
}
const body = Buffer.from(JSON.stringify({ pad: "x".repeat(size - '{"pad":""}'.length) }));

const server = createServer((req, res) => {
  req.on("data", () => {});
  req.on("end", () => {
    res.writeHead(200, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      "x-request-id": "00000000-0000-4000-8000-000000000000",
      "content-length": String(body.length),
    });
    res.end(body);
  });
});
server.listen(0, "127.0.0.1", () => {
  console.error(`bare-http: listening on http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
process.on("SIGTERM", () => process.exit(0));
