import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * `acr-credential broker` as its own process (the server under test is never the test's process),
 * configured by a file, with its identity from the environment as an operator would run it.
 */
export interface BrokerProcess {
  url: string;
  pid: number;
  child: ChildProcess;
  /** Everything the broker wrote (JSON log lines on stdout, start-up and errors on stderr). */
  output(): string;
  /** Heap and RSS after a forced garbage collection in the broker process. */
  memory(): Promise<NodeJS.MemoryUsage>;
  /** Resident set size from /proc, in bytes, as the operating system sees it. */
  rssBytes(): number;
  alive(): boolean;
  stop(): Promise<void>;
}

const repositoryRoot = new URL("../../../", import.meta.url).pathname;
const childEntry = new URL("./broker-child.ts", import.meta.url).pathname;

export async function startBrokerProcess(options: {
  config: unknown;
  identity: { accessKeyId: string; accessKeySecret: string };
  env?: Record<string, string>;
}): Promise<BrokerProcess> {
  const dir = await mkdtemp(join(tmpdir(), "reliability-broker-"));
  const configFile = join(dir, "broker.json");
  await writeFile(configFile, JSON.stringify(options.config));
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", childEntry, "--config", configFile, "--port", "0"], {
    cwd: repositoryRoot,
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      LOG_LEVEL: "info",
      ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true",
      ALIBABA_CLOUD_ACCESS_KEY_ID: options.identity.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: options.identity.accessKeySecret,
      ...options.env,
    },
  });
  let text = "";
  child.stdout!.on("data", (chunk: Buffer) => (text += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the broker did not start within 60 s: ${text}`)), 60_000);
    const poll = setInterval(() => {
      const match = /listening on (http:\/\/\S+)/.exec(text);
      if (match) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve(match[1]!);
      } else if (child.exitCode !== null) {
        clearInterval(poll);
        clearTimeout(timer);
        reject(new Error(`the broker exited with ${child.exitCode} before listening: ${text}`));
      }
    }, 50);
  });

  return {
    url,
    pid: child.pid!,
    child,
    output: () => text,
    memory: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("the broker did not report its memory")), 10_000);
        child.once("message", (message) => {
          clearTimeout(timer);
          resolve((message as { memory: NodeJS.MemoryUsage }).memory);
        });
        child.send("memory");
      }),
    rssBytes: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      const kilobytes = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
      if (kilobytes === undefined) throw new Error(`no VmRSS for the broker process ${child.pid}`);
      return Number(kilobytes) * 1024;
    },
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
