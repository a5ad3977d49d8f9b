/**
 * What the kubelet credential provider tests share: the plugin built from kubelet-provider/ (Go's
 * cache makes a rebuild take a second or two), the `keyring` harness that test/kubelet-provider/build.sh
 * builds from the pinned Kubernetes release, and the broker's HTTP server behind TLS as the plugin
 * requires, with a throw-away CA.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createServerTls } from "../../emulator/tls.ts";
import type { BrokerRuntime } from "../../functions/broker/runtime.ts";
import { createHttpServer } from "../../functions/broker/server.ts";
import type { Identity } from "../../shared/alibaba/identity.ts";

const root = new URL("../../", import.meta.url).pathname;

export const goAvailable = (): boolean => {
  try {
    execFileSync("go", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

/** Builds the plugin into `dir` and returns its path. */
export function buildPlugin(dir: string): string {
  execFileSync("bash", [join(root, "kubelet-provider/build.sh"), dir], { stdio: ["ignore", "ignore", "inherit"] });
  return join(dir, "acr-credential-kubelet-provider");
}

/** The keyring harness for the Kubernetes release pinned in test/kubelet-provider/go.mod, if built. */
export function keyringBinary(): string | undefined {
  const goMod = readFileSync(join(root, "test/kubelet-provider/go.mod"), "utf8");
  const version = /^\s*k8s\.io\/kubernetes (v\S+)/m.exec(goMod)?.[1];
  const path = join(root, ".cache/kubelet-provider", version ?? "unknown", "bin/keyring");
  return existsSync(path) ? path : undefined;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(binary: string, args: string[], input: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(binary, args, { env: { PATH: process.env.PATH ?? "", ...env }, encoding: "utf8", timeout: 90_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr }),
    );
    child.stdin?.end(input);
  });
}

export interface HttpsBroker {
  url: string;
  caFile: string;
  /** Requests per path the broker has received so far. */
  requests: Map<string, number>;
  close(): Promise<void>;
}

/** The broker's HTTP server (createHttpServer, as `acr-credential broker` and the custom runtime serve) behind TLS. */
export async function serveBrokerHttps(runtime: BrokerRuntime, dir: string, baseIdentity?: Identity): Promise<HttpsBroker> {
  const tls = await createServerTls(dir);
  const requests = new Map<string, number>();
  const plain = createHttpServer(runtime, baseIdentity ? { baseIdentity } : {});
  const listener = plain.listeners("request")[0] as (req: IncomingMessage, res: ServerResponse) => void;
  const server = createHttpsServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const path = req.url ?? "?";
    requests.set(path, (requests.get(path) ?? 0) + 1);
    listener(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    caFile: tls.caFile,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
