import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assumeRole, crCall, sessionKey } from "./clients.ts";

const bin = new URL("../../bin/acr-credential.mjs", import.meta.url).pathname;
const demoWorld = new URL("../../emulator/worlds/demo.yaml", import.meta.url).pathname;
const demoBroker = { accessKeyId: "TESTAKDEMOBROKER01", accessKeySecret: "test-secret-demo-broker-do-not-use" };

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[]): { child: ChildProcess; firstLine: Promise<string>; finished: Promise<Finished> } {
  const child = spawn(process.execPath, [bin, "emulator", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const firstLine = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`exited with ${code} before printing its endpoints: ${stderr}`)));
  });
  // Tests of failures never wait for the first line.
  firstLine.catch(() => undefined);
  const finished = new Promise<Finished>((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
  return { child, firstLine, finished };
}

describe("acr-credential emulator", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "emulator-cli-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prints one JSON line of endpoints, serves the world, logs JSON without secrets, and stops on SIGTERM", async () => {
    const { child, firstLine, finished } = start(["--world", demoWorld, "--port", "0"]);
    try {
      const endpoints = JSON.parse(await firstLine) as { http: string; https: string; sts: string; cr: string; fc: string; caFile: string; realm: string };
      expect(endpoints).toMatchObject({
        http: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
        https: expect.stringMatching(/^https:\/\/127\.0\.0\.1:\d+$/),
        realm: `${endpoints.http}/auth`,
      });
      expect(await (await fetch(`${endpoints.http}/healthz`)).json()).toEqual({ status: "ok" });
      const assumed = await assumeRole(endpoints.sts, demoBroker, { RoleArn: "acs:ram::1000000000000001:role/acr-pull", RoleSessionName: "cli-test" });
      const token = await crCall(endpoints.cr, sessionKey(assumed), "GetAuthorizationToken", { InstanceId: "cri-demo" });
      child.kill("SIGTERM");
      const result = await finished;
      expect(result.code).toBe(0);
      expect(result.stdout.trim().split("\n")).toHaveLength(1);
      const logLines = result.stderr
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { msg: string; api?: string });
      expect(logLines.filter((line) => line.msg === "request").map((line) => line.api)).toEqual(["sts:AssumeRole", "cr:GetAuthorizationToken"]);
      for (const secret of [
        demoBroker.accessKeySecret,
        assumed.credentials!.accessKeySecret!,
        assumed.credentials!.securityToken!,
        token["AuthorizationToken"] as string,
      ]) {
        expect(result.stderr).not.toContain(secret);
      }
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("refuses an invalid world file with one line naming the file and field, exit 2", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(
      file,
      'accounts:\n  - id: "1000000000000001"\n    roles:\n      - name: r\n        maxSessionDuration: 5\n        trustPolicy: { Statement: [] }\n',
    );
    const result = await start(["--world", file]).finished;
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain(file);
    expect(result.stderr).toMatch(/accounts\[0\]\.roles\[0\]\.maxSessionDuration/);
    expect(result.stderr).toMatch(/\[ConfigInvalid\]/);
    expect(result.stdout).toBe("");
  });

  it("refuses a missing world file with one line, exit 2", async () => {
    const result = await start(["--world", join(dir, "absent.yaml")]).finished;
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/\[FileUnreadable\]/);
  });

  it("asks for --world when it is missing", async () => {
    const result = await start([]).finished;
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--world FILE is required.*\[UsageError\]/);
  });
});
