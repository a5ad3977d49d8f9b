import { describe, expect, it } from "vitest";
import { cli } from "./support.ts";

/** The refresh command's own flags, checked before it touches a cluster (no kubeconfig needed). */
describe("acr-credential refresh flags", () => {
  it.each([
    [["--spread-window", "soon"], /--spread-window must be a duration from 0s to 1h such as 5m or 90s, got 'soon'/],
    [["--spread-window", "2h"], /--spread-window must be a duration from 0s to 1h/],
    [["--schedule-interval", "10s"], /--schedule-interval must be a duration from 1m to 24h/],
    [["--no-spread", "--spread-window", "1m"], /--no-spread and --spread-window exclude each other/],
    [["--deadline", "10s"], /--deadline must be a duration from 1m to 24h/],
    [["--watch", "--deadline", "5m"], /--deadline works with --once only/],
    [["--heal-interval", "5m"], /--heal-interval works with --watch only/],
    [["--watch", "--heal-interval", "2s"], /--heal-interval must be 0 or at least 10s/],
  ])("rejects %j with one line and exit 2", async (args, message) => {
    const result = await cli(["refresh", ...args], { env: { PATH: process.env.PATH, HOME: "/nonexistent", KUBECONFIG: "/nonexistent" } });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/\[UsageError\]/);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("documents them in --help", async () => {
    const result = await cli(["refresh", "--help"]);
    expect(result.code).toBe(0);
    for (const flag of ["--schedule-interval", "--spread-window", "--no-spread", "--deadline", "--heal-interval"]) expect(result.stdout).toContain(flag);
  });
});
