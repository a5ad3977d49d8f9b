import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { stringify } from "yaml";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";

export interface DockerRegistryOptions {
  /** URL of the token realm, e.g. `http://127.0.0.1:PORT/auth`. */
  realm: string;
  service: string;
  issuer: string;
  /** PEM file of the certificate(s) whose keys may sign tokens. */
  rootCertBundle: string;
  /** Filesystem storage root for the registry's blobs and manifests. */
  dataDir: string;
}

export interface RunningDockerRegistry {
  /** `127.0.0.1:PORT`, as image references spell a registry. */
  host: string;
  close(): Promise<void>;
}

const executableName = "docker-registry";
const readyTimeoutMs = 20_000;
const stopTimeoutMs = 5_000;
const keptOutputBytes = 8192;

/** The first executable called `name` on PATH, if any. */
export function findExecutable(name: string, path = process.env.PATH ?? ""): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export function dockerRegistryAvailable(): boolean {
  return findExecutable(executableName) !== undefined;
}

/** docker-registry's configuration: token auth against the realm, filesystem storage, loopback only. */
export function dockerRegistryConfig(options: DockerRegistryOptions, port: number, httpSecret: string): object {
  return {
    version: 0.1,
    // Errors only and no access log: nothing a test or the sandbox needs goes there.
    log: { level: "error", formatter: "text", accesslog: { disabled: true } },
    storage: {
      filesystem: { rootdirectory: options.dataDir },
      delete: { enabled: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret: httpSecret, headers: { "X-Content-Type-Options": ["nosniff"] } },
    auth: { token: { realm: options.realm, service: options.service, issuer: options.issuer, rootcertbundle: options.rootCertBundle } },
  };
}

/**
 * Spawns docker-registry on a free loopback port with token auth, waits until it answers, and
 * stops it on `close()`.
 */
export async function startDockerRegistry(options: DockerRegistryOptions): Promise<RunningDockerRegistry> {
  const executable = findExecutable(executableName);
  if (executable === undefined) {
    throw new AcrCredentialError(
      "RegistryUnavailable",
      "docker-registry is not installed; install the Debian package docker-registry (or put the binary on PATH)",
    );
  }
  const configDir = await mkdtemp(join(tmpdir(), "acr-registry-config-"));
  try {
    // The free port is found by binding and releasing it, so another process may take it before
    // the registry binds; a registry that dies before answering is retried on a new port.
    let lastFailure = "";
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const port = await freeLoopbackPort();
      const configPath = join(configDir, "config.yml");
      await writeFile(configPath, stringify(dockerRegistryConfig(options, port, randomBytes(32).toString("hex"))), { mode: 0o600 });
      const started = await spawnUntilReady(executable, configPath, port);
      if (started.ready) {
        return { host: `127.0.0.1:${port}`, close: once(() => stop(started.child).finally(() => rm(configDir, { recursive: true, force: true }))) };
      }
      lastFailure = started.failure;
      if (!/address already in use/.test(lastFailure)) break;
    }
    throw new AcrCredentialError("RegistryUnavailable", `docker-registry did not start (${lastFailure}); fix the file or setting it names and start again`);
  } catch (error) {
    await rm(configDir, { recursive: true, force: true });
    throw error;
  }
}

type StartOutcome = { ready: true; child: ChildProcess } | { ready: false; failure: string };

async function spawnUntilReady(executable: string, configPath: string, port: number): Promise<StartOutcome> {
  // Only PATH is passed on: REGISTRY_* variables of the caller would silently override the config.
  const child = spawn(executable, ["serve", configPath], { env: { PATH: process.env.PATH ?? "" }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString("utf8")).slice(-keptOutputBytes);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const spawnFailure = new Promise<string>((resolve) => child.once("error", (error) => resolve(oneLine(error))));
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  child.once("exit", () => process.removeListener("exit", killOnExit));

  const deadline = Date.now() + readyTimeoutMs;
  while (Date.now() < deadline && !exited) {
    if (await answers(port)) return { ready: true, child };
    const failed = await Promise.race([spawnFailure, delay(100).then(() => undefined)]);
    if (failed !== undefined) return { ready: false, failure: failed };
  }
  await stop(child);
  return {
    ready: false,
    failure: exited ? `it exited before answering: ${failureReason(output)}` : `no answer on 127.0.0.1:${port} within ${readyTimeoutMs / 1000}s`,
  };
}

/** The line of docker-registry's output that says why it stopped (it panics on a bad config). */
export function failureReason(output: string): string {
  const lines = output
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
  const reason = lines.find((line) => line.startsWith("panic:")) ?? lines.find((line) => /level=(fatal|panic|error)/.test(line)) ?? lines.at(-1);
  return reason === undefined ? "no output" : oneLine(reason);
}

/**
 * A registry answer on `/v2/` (a 401 challenge, with token auth) means it is serving; the API
 * version header tells it apart from another program that took the port in the meantime.
 */
async function answers(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(1000) });
    await response.body?.cancel();
    return response.headers.get("docker-distribution-api-version") === "registry/2.0";
  } catch {
    return false;
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs);
  await exited;
  clearTimeout(timer);
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function once(action: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= action());
}
