import { describe, expect, it } from "vitest";
import { rateLimitedWarning } from "../../../../functions/broker/cache/warnings.ts";

describe("shared-cache warnings", () => {
  it("logs each reason at most once per interval, then says how many were left out", () => {
    const lines: Array<Record<string, unknown>> = [];
    let now = 0;
    const warn = rateLimitedWarning({ warn: ((fields: Record<string, unknown>) => void lines.push(fields)) as never }, 60_000, () => now);
    for (let i = 0; i < 100; i++) warn("unavailable", { operation: "read" });
    warn("unreadable", { reason: "authentication" });
    expect(lines).toEqual([
      { sharedCache: "unavailable", operation: "read" },
      { sharedCache: "unreadable", reason: "authentication" },
    ]);
    now = 59_999;
    warn("unavailable");
    expect(lines).toHaveLength(2);
    now = 60_000;
    warn("unavailable");
    expect(lines[2]).toEqual({ sharedCache: "unavailable", suppressed: 100 });
  });
});
