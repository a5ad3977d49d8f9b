/**
 * A real `redis-server` (Debian's package, installed by .ci/run) for the shared-cache tests: its own
 * port and directory, no persistence, killed and restarted on demand. The test talks to it with
 * its own ioredis connection to read, tamper with and count what the broker stored.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../../emulator/fc-runtime/instances.ts";
import { createCertificateAuthority } from "../../emulator/tls.ts";

export interface RedisServer {
  /** `redis://127.0.0.1:<port>` (or `rediss://localhost:<port>` with TLS). */
  url: string;
  port: number;
  /** Process id of the running server (to SIGSTOP it: a hung server). */
  pid(): number;
  /** The CA that signed the server's certificate (TLS only). */
  caPem?: string;
  /** A connection of the test's own (not the broker's). */
  client: Redis;
  /** Every key with its value, as a dump of the database would show them. */
  dump(): Promise<Map<string, string>>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port (empty: nothing is persisted). */
  restart(): Promise<void>;
  alive(): boolean;
  close(): Promise<void>;
}

export async function startRedisServer(options: { maxmemory?: string; tls?: boolean; password?: string } = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), "redis-test-"));
  const port = await freePort();
  const args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no"];
  let caPem: string | undefined;
  if (options.tls) {
    const ca = await createCertificateAuthority("shared cache test CA");
    const cert = await ca.issue(["localhost", "127.0.0.1"]);
    await writeFile(join(dir, "server.crt"), cert.certPem);
    await writeFile(join(dir, "server.key"), cert.keyPem);
    await writeFile(join(dir, "ca.crt"), ca.certPem);
    caPem = ca.certPem;
    args.push(
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      join(dir, "server.crt"),
      "--tls-key-file",
      join(dir, "server.key"),
      "--tls-ca-cert-file",
      join(dir, "ca.crt"),
      "--tls-auth-clients",
      "no",
    );
  } else {
    args.push("--port", String(port));
  }
  if (options.password) args.push("--requirepass", options.password);
  if (options.maxmemory) args.push("--maxmemory", options.maxmemory, "--maxmemory-policy", "noeviction");

  let child: ChildProcess | undefined;
  const launch = async () => {
    child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const started = child;
    let spawnError: Error | undefined;
    started.once("error", (error) => (spawnError = error));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 15_000);
      const poll = setInterval(() => {
        if (spawnError) {
          clearInterval(poll);
          clearTimeout(timer);
          reject(new Error(`cannot run redis-server (${spawnError.message}); install it: apt-get install redis-server`));
        } else if (/Ready to accept connections/.test(output)) {
          clearInterval(poll);
          clearTimeout(timer);
          resolve();
        } else if (started.exitCode !== null) {
          clearInterval(poll);
          clearTimeout(timer);
          reject(new Error(`redis-server exited with ${started.exitCode}: ${output}`));
        }
      }, 20);
    });
  };
  await launch();

  const client = new Redis({
    host: "127.0.0.1",
    port,
    ...(options.password ? { password: options.password } : {}),
    ...(caPem ? { tls: { ca: caPem, servername: "localhost" } } : {}),
    maxRetriesPerRequest: 1,
    retryStrategy: () => 100,
    lazyConnect: true,
  });
  client.on("error", () => {});
  await client.connect();

  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
    running.kill(signal);
    await exited;
  };

  return {
    url: caPem ? `rediss://localhost:${port}` : `redis://127.0.0.1:${port}`,
    port,
    pid: () => child!.pid!,
    ...(caPem ? { caPem } : {}),
    client,
    async dump() {
      const all = new Map<string, string>();
      for (const key of await client.keys("*")) {
        const value = await client.get(key);
        if (value !== null) all.set(key, value);
      }
      return all;
    },
    kill,
    async restart() {
      await kill();
      await launch();
      await new Promise<void>((resolve) => (client.status === "ready" ? resolve() : client.once("ready", () => resolve())));
    },
    alive: () => child !== undefined && child.exitCode === null && child.signalCode === null,
    async close() {
      client.disconnect();
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
