/**
 * `err` reads the same in every component's log: code and one-line message for the product's
 * errors, name and message for anything unexpected, never a stack, never an error's other fields.
 */
import { describe, expect, it } from "vitest";
import { AcrCredentialError } from "../../shared/errors.ts";
import { createLogger, errorFields } from "../../shared/log.ts";

function logged(fields: Record<string, unknown>): Record<string, unknown> {
  const lines: string[] = [];
  const log = createLogger("test", { destination: { write: (line: string) => void lines.push(line) } });
  log.warn(fields, "something failed");
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

describe("errorFields", () => {
  it("an AcrCredentialError is its code and its message on one line", () => {
    const error = new AcrCredentialError("UpstreamTimeout", "AssumeRole did not answer within 3000 ms;\n  retry later");
    expect(errorFields(error)).toEqual({ code: "UpstreamTimeout", message: "AssumeRole did not answer within 3000 ms; retry later" });
  });

  it("any other Error is its class name and one-line message", () => {
    expect(errorFields(new TypeError("cannot read 'x'\nof undefined"))).toEqual({ name: "TypeError", message: "cannot read 'x' of undefined" });
  });

  it("an error as the broker reports it ({code, message}) keeps its code; anything else thrown is its text", () => {
    expect(errorFields({ code: "BrokerUnreachable", message: "connect ECONNREFUSED", attempts: 3 })).toEqual({
      code: "BrokerUnreachable",
      message: "connect ECONNREFUSED",
    });
    expect(errorFields("socket hang up")).toEqual({ message: "socket hang up" });
    expect(errorFields(42)).toEqual({ message: "42" });
    expect(errorFields(undefined)).toEqual({ message: "undefined" });
  });
});

describe("a logger's err field", () => {
  it("is written by errorFields: no stack, no details, no cause, whatever the error carries", () => {
    const cause = Object.assign(new Error("upstream said no"), { request: { headers: { authorization: "acs AK:signature-not-to-log" } } });
    const error = new AcrCredentialError("UpstreamError", "AssumeRole was refused", {
      cause,
      details: { upstreamCode: "p-not-to-log", problems: ["p-not-to-log"] },
    });
    const line = logged({ err: error });
    expect(line.err).toEqual({ code: "UpstreamError", message: "AssumeRole was refused" });
    const text = JSON.stringify(line);
    expect(text).not.toContain("stack");
    expect(text).not.toContain("not-to-log");
  });

  it("an unexpected Error is written without its stack", () => {
    const line = logged({ err: new RangeError("index out of range") });
    expect(line.err).toEqual({ name: "RangeError", message: "index out of range" });
    expect(JSON.stringify(line)).not.toContain("at ");
  });

  it("stays in place in a child logger with bound fields", () => {
    const lines: string[] = [];
    const log = createLogger("broker", { destination: { write: (line: string) => void lines.push(line) } }).child({ requestId: "r-1", cluster: "prod" });
    log.error({ err: new AcrCredentialError("Internal", "boom") }, "failed");
    expect(JSON.parse(lines[0]!)).toMatchObject({ requestId: "r-1", cluster: "prod", err: { code: "Internal", message: "boom" } });
  });
});
