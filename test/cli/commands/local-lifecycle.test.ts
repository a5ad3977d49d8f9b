/**
 * How `npm start` ends when something other than a terminal stops it (an IDE's stop button,
 * `timeout`): a SIGTERM to npm alone must take the sandbox's node and docker-registry with it.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerRegistryAvailable } from "../../../emulator/registry/index.ts";
import { repositoryRoot, start } from "./support.ts";

let stateDir: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "acr-local-lifecycle-"));
});

afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

/** Every process below `pid`, from /proc (no procps needed): its pid and command line. */
function descendants(pid: number): Array<{ pid: number; command: string }> {
  const table = readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => {
      try {
        // The command name in field 2 may hold spaces and parentheses; the fields after its last ')' do not.
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        const command = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").trim();
        return [{ pid: Number(entry), ppid, command }];
      } catch {
        return []; // gone meanwhile
      }
    });
  const found: Array<{ pid: number; command: string }> = [];
  const visit = (parent: number) => {
    for (const child of table.filter((entry) => entry.ppid === parent)) {
      found.push({ pid: child.pid, command: child.command });
      visit(child.pid);
    }
  };
  visit(pid);
  return found;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("npm start", () => {
  it("stops the sandbox's node and docker-registry when npm alone gets SIGTERM", async () => {
    const npm = spawn("npm", ["start", "--", "--port", "0", "--state-dir", stateDir], { cwd: repositoryRoot, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    npm.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<void>((resolve) => npm.once("exit", () => resolve()));
    const deadline = Date.now() + 90_000;
    while (!/the sandbox is running/.test(out)) {
      if (npm.exitCode !== null || Date.now() > deadline) throw new Error(`npm start did not start the sandbox: ${out}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const children = descendants(npm.pid!);
    expect(children.map((child) => child.command)).toContainEqual(expect.stringMatching(/bin\/acr-credential\.mjs local/));
    if (dockerRegistryAvailable()) expect(children.map((child) => child.command)).toContainEqual(expect.stringMatching(/docker-registry serve/));

    npm.kill("SIGTERM");
    await exited;
    const stopped = Date.now() + 15_000;
    while (children.some((child) => alive(child.pid)) && Date.now() < stopped) await new Promise((resolve) => setTimeout(resolve, 200));
    const left = children.filter((child) => alive(child.pid));
    for (const child of left) process.kill(child.pid, "SIGKILL");
    expect(left.map((child) => child.command)).toEqual([]);
  }, 120_000);
});

describe("acr-credential local --without-registry", () => {
  it("says the registry was left out on request, not that docker-registry must be installed", async () => {
    const sandbox = start(["local", "--port", "0", "--state-dir", stateDir, "--without-registry"]);
    try {
      const [registryLine] = await sandbox.waitFor(/ {2}registry {3}.*/);
      expect(registryLine).toBe("  registry   not started (--without-registry)");
    } finally {
      expect(await sandbox.stop("SIGINT")).toBe(0);
    }
  }, 120_000);
});
