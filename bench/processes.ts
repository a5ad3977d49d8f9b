/**
 * Child processes for the benchmarks: servers that run alone in their own process (so the load
 * generator does not share their event loop), and timed one-shot programs with their peak RSS.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));
export const repoPath = (path: string): string => fileURLToPath(new URL(`../${path}`, import.meta.url));

export interface RunningServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/**
 * Starts a server and waits until it prints a line matching `ready` (first group: its URL) on stdout
 * or stderr. With `stdoutFd` (an open file), stdout goes there instead, unread by this process.
 */
export function startServer(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; ready: RegExp; timeoutMs?: number; stdoutFd?: number },
): Promise<RunningServer> {
  // stdout is dropped unread: the broker writes its request log there, as it would to a log collector.
  const child = spawn(command, args, { cwd: repoRoot, env: options.env ?? process.env, stdio: ["ignore", options.stdoutFd ?? "pipe", "pipe"] });
  let seen = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`${args.join(" ")} did not start within ${options.timeoutMs ?? 60_000} ms; it wrote: ${seen.slice(-2000)}`)),
      options.timeoutMs ?? 60_000,
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      void stopChild(child).then(() => reject(error));
    };
    const watch = (chunk: Buffer) => {
      if (seen.length < 100_000) seen += chunk.toString("utf8");
      const match = options.ready.exec(seen);
      if (match?.[1] === undefined) return;
      clearTimeout(timer);
      child.stdout?.removeListener("data", watch);
      child.stderr?.removeListener("data", watch);
      child.stdout?.resume();
      child.stderr?.resume();
      resolve({ url: match[1], pid: child.pid!, stop: () => stopChild(child) });
    };
    child.stdout?.on("data", watch);
    child.stderr?.on("data", watch);
    child.once("error", (error) => fail(error));
    child.once("exit", (code, signal) => fail(new Error(`${args.join(" ")} exited (${code ?? signal}) before it was ready; it wrote: ${seen.slice(-2000)}`)));
  });
}

export interface TimedRun {
  code: number;
  wallMs: number;
  stdout: string;
  stderr: string;
  /** VmHWM of the child, read from its own /proc/self/status as it exits (kB); only with `peakRss`. */
  peakRssKb?: number;
}

const rssProbe = repoPath("bench/servers/peak-rss-probe.mjs");

/**
 * Runs a program to its end and measures its wall time from spawn to exit. With `peakRss`, a node
 * program is started with a preload that records its VmHWM at exit (node only).
 */
export async function runTimed(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; peakRss?: boolean; input?: string } = {},
): Promise<TimedRun> {
  const probeFile = options.peakRss ? join(tmpdir(), `acr-bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`) : undefined;
  const finalArgs = probeFile ? ["--import", pathToFileURL(rssProbe).href, ...args] : args;
  const env = { ...(options.env ?? process.env), ...(probeFile ? { ACR_BENCH_PEAK_RSS_FILE: probeFile } : {}) };
  const started = performance.now();
  const child = spawn(command, finalArgs, { cwd: options.cwd ?? repoRoot, env, stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
  if (options.input !== undefined) child.stdin?.end(options.input);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => void (stdout.length < 1_000_000 && (stdout += chunk.toString("utf8"))));
  child.stderr?.on("data", (chunk: Buffer) => void (stderr.length < 1_000_000 && (stderr += chunk.toString("utf8"))));
  const code = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (exitCode) => resolve(exitCode ?? 1));
  });
  const wallMs = performance.now() - started;
  const run: TimedRun = { code, wallMs, stdout, stderr };
  if (probeFile) {
    const text = await readFile(probeFile, "utf8").catch(() => "");
    await rm(probeFile, { force: true });
    const kb = Number(text.trim());
    if (text.trim() === "" || !Number.isFinite(kb)) throw new Error(`${args.join(" ")}: no peak RSS recorded (exit ${code}): ${stderr.slice(-1000)}`);
    run.peakRssKb = kb;
  }
  return run;
}
