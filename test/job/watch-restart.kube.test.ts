/**
 * `--watch` as it runs in its pod, a process of its own (the CLI, and the image's bundled entry),
 * while its kube-apiserver is killed and started again: it must reconnect by itself and serve a
 * namespace created afterwards, without exiting. A control plane of its own, so that the shared
 * one never loses its apiserver under other test files.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ApiException, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRefresherConfig } from "../../job/config.ts";
import { findPinnedKubeBinaries } from "../kube/binaries.ts";
import { kubeAvailable } from "../kube/cluster.ts";
import { startControlPlane, type ControlPlane } from "../kube/control-plane.ts";
import { startStubBroker, type StubBroker } from "./stub-broker.ts";

const registryInfo = "- instanceId: cri-restart\n  regionId: cn-hangzhou";
const [secretName] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registryInfo }).config.registries.map(
  (r) => r.secretName,
) as [string];
const repo = new URL("../../", import.meta.url).pathname;

interface Running {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function launch(args: string[], node = process.execPath, extraEnv: NodeJS.ProcessEnv = {}): Running {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info", ...extraEnv };
  delete env.KUBERNETES_SERVICE_HOST;
  const child = spawn(node, args, { cwd: repo, env, stdio: ["ignore", "ignore", "pipe"] });
  const lines: Array<Record<string, unknown>> = [];
  let pending = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    pending += chunk;
    const parts = pending.split("\n");
    pending = parts.pop() ?? "";
    for (const line of parts) {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line });
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, exited };
}

async function until<T>(what: string, milliseconds: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await Promise.resolve(check()).catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() - started > milliseconds) throw new Error(`${what}: not within ${milliseconds} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe.skipIf(!kubeAvailable())("--watch while its kube-apiserver is killed and started again", () => {
  let plane: ControlPlane;
  let broker: StubBroker;
  let dir: string;
  let bundle: string;
  let tokenFile: string;
  /** The Node.js LTS the image ships (test/lts/node.sh), falling back to this one when it cannot be fetched. */
  let imageNode = process.execPath;
  const core = () => {
    const config = new KubeConfig();
    config.loadFromString(plane.kubeconfig);
    return config.makeApiClient(CoreV1Api);
  };
  const served = async (namespace: string): Promise<true | undefined> => {
    const secret = await core()
      .readNamespacedSecret({ namespace, name: secretName })
      .catch((error: unknown) => {
        if (error instanceof ApiException && error.code === 404) return undefined;
        throw error;
      });
    const account = await core().readNamespacedServiceAccount({ namespace, name: "default" });
    return secret !== undefined && (account.imagePullSecrets ?? []).some((entry) => entry.name === secretName) ? true : undefined;
  };
  const namespaceWithAccount = async (name: string) => {
    await core().createNamespace({ body: { metadata: { name } } });
    await core().createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: "default" } } });
  };

  beforeAll(async () => {
    const lookup = findPinnedKubeBinaries();
    if (!lookup.found) throw new Error(lookup.reason);
    plane = await startControlPlane({ binaries: lookup.binaries });
    broker = await startStubBroker();
    dir = await mkdtemp(join(tmpdir(), "watch-restart-"));
    tokenFile = join(dir, "token");
    await writeFile(tokenFile, "a-projected-token");
    bundle = join(dir, "refresher.mjs");
    await promisify(execFile)(process.execPath, [join(repo, "job/build.mjs"), bundle]);
    imageNode = await promisify(execFile)("bash", [join(repo, "test/lts/node.sh")]).then(
      (out) => out.stdout.trim(),
      (error: unknown) => {
        console.warn(`the image's Node.js LTS is not available (${String(error).split("\n")[0]}); the bundle runs on ${process.version}`);
        return process.execPath;
      },
    );
    await core().createNamespacedConfigMap({
      namespace: "kube-system",
      body: {
        metadata: { name: "acr-configuration" },
        data: { "broker-url": broker.url, "watch-namespace": "rst-*", "acr-registry-info": registryInfo, "spread-window": "0" },
      },
    });
  }, 180_000);

  afterAll(async () => {
    await plane?.stop();
    await broker?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  // The image's command: its bundle, on its Node.js, with its NODE_OPTIONS (job/Dockerfile).
  const imageEnv = { NODE_OPTIONS: /^ENV NODE_OPTIONS="(.*)"$/m.exec(readFileSync(join(repo, "job/Dockerfile"), "utf8"))?.[1] ?? "" };
  const variants: Array<[string, () => Running]> = [
    [
      "the CLI (acr-credential refresh --watch)",
      () => launch(["bin/acr-credential.mjs", "refresh", "--watch", "--kubeconfig", plane.kubeconfigFile, "--token-file", tokenFile]),
    ],
    [
      "the image's bundled entry (dist/job/refresher.mjs --watch)",
      () => launch([bundle, "--watch", "--kubeconfig", plane.kubeconfigFile, "--token-file", tokenFile], imageNode, imageEnv),
    ],
  ];

  it("the bundled entry with --watch and no configuration ends with exit code 2 and one line saying why, not a hang", async () => {
    const running = launch(
      [bundle, "--watch", "--kubeconfig", plane.kubeconfigFile, "--token-file", tokenFile, "--config-map", "kube-system/absent"],
      imageNode,
      imageEnv,
    );
    const exited = await Promise.race([running.exited, new Promise<"hang">((resolve) => setTimeout(() => resolve("hang"), 30_000))]);
    if (exited === "hang") running.child.kill("SIGKILL");
    expect(exited).toEqual({ code: 2, signal: null });
    expect(String(running.lines.at(-1)?.msg)).toMatch(/^acr-credential refresh: ConfigMap kube-system\/absent does not exist; .* \[ConfigInvalid\]$/);
  }, 60_000);

  for (const [index, [name, start]] of variants.entries()) {
    it(`${name} reconnects by itself and serves a namespace created afterwards, in the same process`, async () => {
      const running = start();
      const lastLines = () =>
        running.lines
          .slice(-8)
          .map((line) => `${String(line.msg)}${line.watch === undefined ? "" : ` (${String(line.watch)})`}`)
          .join("; ");
      try {
        await until("the watcher starts", 120_000, () => running.lines.find((line) => String(line.msg).startsWith("watching namespaces")));
        await namespaceWithAccount(`rst-before-${index}`);
        await until("a namespace is served before the restart", 10_000, () => served(`rst-before-${index}`));

        await plane.apiserver.stop();
        // Long enough for every watch to fail and back off more than once (the old code exited here, code 13).
        await new Promise((resolve) => setTimeout(resolve, 4_000));
        const restartedAt = Date.now();
        await plane.apiserver.start();
        const backAt = Date.now();

        await namespaceWithAccount(`rst-after-${index}`);
        await until("the namespace created after the restart is served", 60_000, () => {
          if (running.child.exitCode !== null) throw new Error(`the refresher exited with code ${running.child.exitCode}`);
          return served(`rst-after-${index}`);
        });
        const servedInMs = Date.now() - backAt;
        const reconnects = await until("every watch reconnects", 90_000, () => {
          const seen = running.lines.filter((line) => line.msg === "watch reconnected");
          return new Set(seen.map((line) => line.watch)).size >= 4 ? seen : undefined;
        });
        const reconnectedInMs = Math.max(...reconnects.map((line) => Date.parse(String(line.time)) - restartedAt));
        console.log(
          `${name}: the API server was ready ${backAt - restartedAt} ms after its restart, every watch had reconnected after ${reconnectedInMs} ms; a namespace created once it was ready was served ${servedInMs} ms later`,
        );

        expect(running.child.exitCode).toBeNull();
        expect(running.child.signalCode).toBeNull();
        expect(running.lines.filter((line) => line.msg === "watch interrupted; reconnecting").length).toBeGreaterThanOrEqual(2);
      } catch (error) {
        throw new Error(`${error instanceof Error ? error.message : String(error)}; the refresher last logged: ${lastLines()}`, { cause: error });
      } finally {
        running.child.kill("SIGTERM");
      }
      // Stopped by its signal, it ends as documented: exit code 0.
      expect(await running.exited).toEqual({ code: 0, signal: null });
    }, 400_000);
  }
});
