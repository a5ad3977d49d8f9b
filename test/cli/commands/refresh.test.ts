import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configFromData } from "../../../job/run.ts";
import { createLogger } from "../../../shared/log.ts";
import { AcrCredentialError } from "../../../shared/errors.ts";
import { cli, repositoryRoot } from "./support.ts";

/** The refresh command's own flags, checked before it touches a cluster (no kubeconfig needed). */
describe("acr-credential refresh flags", () => {
  it.each([
    [["--spread-window", "soon"], /--spread-window must be a duration from 0s to 1h such as 5m or 90s, got 'soon'/],
    [["--spread-window", "2h"], /--spread-window must be a duration from 0s to 1h/],
    [["--schedule-interval", "10s"], /--schedule-interval must be a duration from 1m to 24h/],
    [["--no-spread", "--spread-window", "1m"], /--no-spread and --spread-window exclude each other/],
    [["--watch", "--metrics-addr", "9102"], /--metrics-addr must be \[HOST\]:PORT such as :9102 or 127\.0\.0\.1:9102, or 0 to switch metrics off, got '9102'/],
    [["--once", "--metrics-addr", ":9102"], /--metrics-addr works with --watch only/],
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
    for (const flag of ["--schedule-interval", "--spread-window", "--no-spread", "--metrics-addr", "--deadline", "--heal-interval"])
      expect(result.stdout).toContain(flag);
  });

  it("says which address is taken when --watch cannot serve its metrics there, with one line and exit 2, before it reaches the cluster", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as { port: number };
    const dir = await mkdtemp(join(tmpdir(), "refresh-metrics-"));
    try {
      // A kubeconfig nothing answers for: the refresher must stop before it tries the cluster.
      const kubeconfig = join(dir, "kubeconfig");
      await writeFile(
        kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:9'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
      );
      const result = await cli(["refresh", "--watch", "--kubeconfig", kubeconfig, "--metrics-addr", `127.0.0.1:${port}`]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(
        new RegExp(
          `cannot serve metrics on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\); pass another --metrics-addr, or 0 to switch metrics off \\[UsageError\\]`,
        ),
      );
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
    } finally {
      taken.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("acr-credential refresh without a cluster", () => {
  it("says no Kubernetes cluster is configured when there is no kubeconfig at all, exit 2", async () => {
    // The client library would otherwise fall back to http://localhost:8080 and fail on the first request.
    const home = await mkdtemp(join(tmpdir(), "refresh-home-"));
    try {
      const result = await cli(["refresh", "--once"], { env: { PATH: process.env.PATH, HOME: home } });
      expect(result.stderr.trim().split("\n")).toEqual([
        "acr-credential refresh: no Kubernetes cluster configured; run in a cluster or pass --kubeconfig [FileUnreadable]",
      ]);
      expect(result.code).toBe(2);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it("says the same when KUBECONFIG names files that do not exist", async () => {
    const result = await cli(["refresh", "--once"], { env: { PATH: process.env.PATH, HOME: "/nonexistent", KUBECONFIG: "/nonexistent/a:/nonexistent/b" } });
    expect(result.stderr).toMatch(/no Kubernetes cluster configured; run in a cluster or pass --kubeconfig \[FileUnreadable\]/);
    expect(result.code).toBe(2);
  });
});

describe("a missing configuration ConfigMap", () => {
  it("points at a sample that exists in the repository", () => {
    let error: unknown;
    try {
      configFromData(undefined, { namespace: "kube-system", name: "acr-configuration" }, createLogger("test", { level: "silent" }));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AcrCredentialError);
    expect((error as AcrCredentialError).code).toBe("ConfigInvalid");
    const sample = /create it \((\S+) is a sample\)/.exec((error as Error).message)?.[1];
    expect(sample).toBeDefined();
    expect(existsSync(join(repositoryRoot, sample!))).toBe(true);
  });
});
