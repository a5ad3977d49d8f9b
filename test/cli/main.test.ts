import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const bin = new URL("../../bin/acr-credential.mjs", import.meta.url).pathname;

async function cli(...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("acr-credential", () => {
  it("lists its commands with --help and exits 0", async () => {
    const result = await cli("--help");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Usage: acr-credential <command>/);
    expect(result.stdout).toMatch(/emulator/);
  });

  it("prints the version of package.json with --version and exits 0", async () => {
    const { version } = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    const result = await cli("--version");
    expect(result).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: "" });
  });

  it("refuses an unknown command with one line and exit 2", async () => {
    const result = await cli("frobnicate");
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/unknown command 'frobnicate'/);
  });

  it("refuses an unknown flag with one line naming it, exit 2 and no stack trace", async () => {
    const result = await cli("local", "--prot", "9000");
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--prot/);
    expect(result.stderr).toMatch(/\[UsageError\]/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("refuses a port that is not a number", async () => {
    const result = await cli("local", "--port", "http");
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--port must be an integer/);
  });
});
