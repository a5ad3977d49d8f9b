// What Function Compute's nodejs20 runtime does on a cold start, in a fresh process: require() the
// bundle, then answer one HTTP-trigger event (GET /healthz), which builds the runtime from
// BROKER_CONFIG on first use. Exits 0 only on a 200 answer.
import { createRequire } from "node:module";

const { handler } = createRequire(import.meta.url)(process.argv[2]);

const event = {
  version: "v1",
  rawPath: "/healthz",
  body: "",
  isBase64Encoded: false,
  headers: { "User-Agent": "cold-init-probe" },
  queryParameters: {},
  requestContext: {
    requestId: "cold-init",
    http: { method: "GET", path: "/healthz", protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "cold-init-probe" },
  },
};
handler(Buffer.from(JSON.stringify(event)), { requestId: "cold-init", function: { name: "broker", timeout: 30 } }).then(
  (response) => {
    if (response.statusCode !== 200) {
      console.error(`cold-init-probe: status ${response.statusCode}: ${response.body}`);
      process.exitCode = 1;
    }
  },
  (error) => {
    console.error(`cold-init-probe: ${error.message}`);
    process.exitCode = 1;
  },
);
