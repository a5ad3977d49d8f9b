import { describe, expect, it } from "vitest";
import { formatDuration, parseGoDuration } from "../../job/duration.ts";

describe("parseGoDuration", () => {
  it.each([
    ["15m", 15 * 60_000],
    ["1h30m", 90 * 60_000],
    ["1.5h", 90 * 60_000],
    ["90s", 90_000],
    ["500ms", 500],
    ["2h45m30s", (2 * 3600 + 45 * 60 + 30) * 1000],
    ["0", 0],
    ["-5m", -5 * 60_000],
  ])("reads %s as Go does", (text, milliseconds) => {
    expect(parseGoDuration(text)).toBe(milliseconds);
  });

  it.each(["15", "15 m", "m", "", "1d", "15min", "h1"])("rejects %j", (text) => {
    expect(parseGoDuration(text)).toBeUndefined();
  });
});

describe("formatDuration", () => {
  it("prints the shortest Go-like form", () => {
    expect(formatDuration(15 * 60_000)).toBe("15m");
    expect(formatDuration(90 * 60_000 + 5000)).toBe("1h30m5s");
    expect(formatDuration(0)).toBe("0s");
  });
});
