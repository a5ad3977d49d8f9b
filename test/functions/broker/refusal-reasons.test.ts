/**
 * Refusal reasons (docs/broker.md, "Refusal reasons"): the documented table is the list the code
 * knows, each reason reaches the request line, and none reaches the answer. Which request yields
 * which reason is tested where the request is made: token-matrix, credentials, kubelet-credentials,
 * kubelet-grants, authorize and cluster-groups tests, and the token battery over HTTP.
 */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { errorResult, logRequest } from "../../../functions/broker/http-api.ts";
import { refusal, refusalReasons, type RefusalReason } from "../../../shared/errors.ts";
import { createLogger } from "../../../shared/log.ts";
import { monotonicNow } from "../../../shared/retry.ts";

function capture() {
  const lines: string[] = [];
  return { log: createLogger("broker", { level: "info", destination: { write: (line: string) => void lines.push(line) } }), lines };
}

/** The rows of the reasons table in docs/broker.md: `[status, reason]`. */
async function documentedReasons(): Promise<Array<[number, string]>> {
  const text = await readFile(new URL("../../../docs/broker.md", import.meta.url), "utf8");
  const section = text.slice(text.indexOf("### Refusal reasons"));
  const table = section.slice(0, section.indexOf("\n\n", section.indexOf("| status |")));
  return [...table.matchAll(/^\| (\d{3}) \| `([a-z-]+)` \|/gm)].map((match) => [Number(match[1]), match[2]!]);
}

describe("refusal reasons", () => {
  it("are documented in docs/broker.md, each once, all of them and no other", async () => {
    const documented = await documentedReasons();
    expect(documented.map(([, reason]) => reason)).toEqual(Object.keys(refusalReasons));
  });

  it("are each documented with the status of their refusal: 401 for a token problem, 403 for what a valid caller may not have", async () => {
    const status = { InvalidToken: 401, Forbidden: 403 };
    expect(await documentedReasons()).toEqual(Object.entries(refusalReasons).map(([reason, code]) => [status[code], reason]));
  });

  for (const [reason, code] of Object.entries(refusalReasons) as Array<[RefusalReason, "InvalidToken" | "Forbidden"]>) {
    it(`${reason}: goes on the request line, and the answer is only the code and the message`, () => {
      const message = "the token's audience (aud) is not this broker's";
      const { log, lines } = capture();
      const result = errorResult(refusal(reason, message), "r-1", log);
      expect(JSON.stringify(result.body)).toBe(JSON.stringify({ error: { code, message } }));
      expect(JSON.stringify(result.headers)).not.toContain(reason);
      logRequest(log, { requestId: "r-1", what: { method: "POST", path: "/v1/credentials" }, annotations: {}, result, startedAt: monotonicNow() });
      expect(lines.map((line) => JSON.parse(line) as Record<string, unknown>)).toEqual([
        expect.objectContaining({ msg: "request", status: code === "InvalidToken" ? 401 : 403, outcome: code, reason }),
      ]);
    });
  }

  it("leave the line of an answered or otherwise failed request without a reason", () => {
    const { log, lines } = capture();
    logRequest(log, {
      requestId: "r-2",
      what: { method: "POST", path: "/v1/credentials" },
      annotations: {},
      result: { status: 200, body: {} },
      startedAt: monotonicNow(),
    });
    logRequest(log, {
      requestId: "r-3",
      what: { method: "GET", path: "/x" },
      annotations: {},
      result: errorResult(new Error("boom"), "r-3", log),
      startedAt: monotonicNow(),
    });
    for (const line of lines) expect(JSON.parse(line)).not.toHaveProperty("reason");
  });
});
