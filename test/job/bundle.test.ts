import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
let dir: string;
let bundle: string;

async function node(...args: string[]) {
  return run(process.execPath, args, { cwd: dir, env: { ...process.env, KUBECONFIG: join(dir, "absent") } }).then(
    (out) => ({ code: 0, ...out }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "refresher-bundle-"));
  bundle = join(dir, "refresher.mjs");
  await run(process.execPath, [new URL("../../job/build.mjs", import.meta.url).pathname, bundle]);
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the bundled refresher (the container's command)", () => {
  it("runs on its own, outside the repository, and prints its usage", async () => {
    const result = await node(bundle, "--help");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Usage: acr-credential refresh/);
  });

  it("prints the version of package.json with --version (`docker run <image> --version`)", async () => {
    const { version } = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    const result = await node(bundle, "--version");
    expect(result).toMatchObject({ code: 0, stdout: `${version}\n` });
  });

  it("fails a bad flag with one line and exit 2", async () => {
    const result = await node(bundle, "--watch", "--once");
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/\[UsageError\]/);
  });

  it("says no Kubernetes cluster is configured outside a cluster without a kubeconfig, exit 2", async () => {
    const result = await run(process.execPath, [bundle, "--once"], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir } }).then(
      (out) => ({ code: 0, ...out }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    expect(result.stderr.trim()).toBe("acr-credential refresh: no Kubernetes cluster configured; run in a cluster or pass --kubeconfig [FileUnreadable]");
    expect(result.code).toBe(2);
  });

  it("loads the metrics library it carries for --watch, and starts serving before it reaches the cluster", async () => {
    // A cluster nothing listens on: the watcher fails after the metrics server has started.
    const kubeconfig = join(dir, "unreachable.kubeconfig");
    await writeFile(
      kubeconfig,
      "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:9'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    );
    const result = await node(bundle, "--watch", "--kubeconfig", kubeconfig, "--metrics-addr", "127.0.0.1:0");
    expect(result.stderr).toMatch(/"address":"127\.0\.0\.1:\d+"[^\n]*"msg":"serving \/metrics, \/healthz and \/readyz"/);
    expect(result.code).not.toBe(0);
  });
});
