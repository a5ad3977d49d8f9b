/**
 * The request line is written without pino's per-field path, so it must stay the line pino writes:
 * the same JSON, fields and level, and nothing below the logger's level.
 */
import { describe, expect, it } from "vitest";
import { logRequest } from "../../../functions/broker/http-api.ts";
import { createLogger } from "../../../shared/log.ts";
import { monotonicNow } from "../../../shared/retry.ts";

function capture(level: string) {
  const lines: string[] = [];
  return { log: createLogger("broker", { level, destination: { write: (line: string) => void lines.push(line) } }), lines };
}

const annotations = {
  cluster: "prod",
  subject: "system:serviceaccount:kube-system:helper",
  instances: ["cri-plat@cn-hangzhou", "personal@cn-beijing"],
  stale: 0,
  failed: 0,
};

describe("the request line", () => {
  it("is the JSON line pino writes for the same fields, one per request", () => {
    const { log, lines } = capture("info");
    logRequest(log, {
      requestId: "r-1",
      what: { method: "POST", path: "/v1/credentials" },
      annotations,
      result: { status: 200, body: {} },
      startedAt: monotonicNow(),
    });
    log.info({ requestId: "r-1", method: "POST", path: "/v1/credentials", ...annotations, status: 200, outcome: "ok", latencyMs: 0 }, "request");
    expect(lines).toHaveLength(2);
    expect(lines[0]!.endsWith("\n")).toBe(true);
    const [ours, pinos] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(Object.keys(ours!)).toEqual(Object.keys(pinos!));
    expect({ ...ours, time: "", latencyMs: 0 }).toEqual({ ...pinos, time: "" });
    expect(ours!.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  it("takes the level from the status, with the error code as outcome, and writes nothing below the logger's level", () => {
    const { log, lines } = capture("warn");
    logRequest(log, {
      requestId: "r-2",
      what: { method: "GET", path: "/healthz" },
      annotations: {},
      result: { status: 200, body: {} },
      startedAt: monotonicNow(),
    });
    logRequest(log, {
      requestId: "r-3",
      what: { method: "POST", path: "/v1/credentials" },
      annotations: {},
      result: { status: 401, body: { error: { code: "InvalidToken", message: "m" } } },
      startedAt: monotonicNow(),
    });
    logRequest(log, {
      requestId: "r-4",
      what: { action: "invoke" },
      annotations: {},
      result: { status: 502, body: { error: { code: "UpstreamError", message: "m" } } },
      startedAt: monotonicNow(),
    });
    expect(lines.map((line) => JSON.parse(line) as { level: number; requestId: string; outcome: string; status: number })).toMatchObject([
      { level: 40, requestId: "r-3", status: 401, outcome: "InvalidToken" },
      { level: 50, requestId: "r-4", action: "invoke", status: 502, outcome: "UpstreamError" },
    ]);
  });
});
