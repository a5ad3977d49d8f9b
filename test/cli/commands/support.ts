import { execFile, spawn, type ChildProcess } from "node:child_process";

export const repositoryRoot = new URL("../../../", import.meta.url).pathname;
export const bin = new URL("../../../bin/acr-credential.mjs", import.meta.url).pathname;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `acr-credential ARGS` to completion. */
export function cli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { env: options.env ?? process.env, cwd: options.cwd ?? repositoryRoot, encoding: "utf8" },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr });
      },
    );
  });
}

/** Runs a shell snippet (the commands a command printed for the user) from the repository root. */
export function shell(script: string, env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile("sh", ["-c", script], { env, cwd: repositoryRoot, encoding: "utf8" }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr });
    });
  });
}

export interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once the output matches, rejects if the process exits first. */
  waitFor(pattern: RegExp, stream?: "stdout" | "stderr", timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a long-running `acr-credential ARGS` (local, broker). */
export function start(args: string[], env: NodeJS.ProcessEnv = process.env): Running {
  const child = spawn(process.execPath, [bin, ...args], { env, cwd: repositoryRoot, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitFor: (pattern, stream = "stdout", timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        const poll = () => {
          const match = (stream === "stdout" ? out : err).match(pattern);
          if (match) return resolve(match);
          if (child.exitCode !== null) return reject(new Error(`exited with ${child.exitCode} before printing ${pattern}: ${err}`));
          if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${pattern}; stdout: ${out} stderr: ${err}`));
          setTimeout(poll, 100);
        };
        poll();
      }),
    stop: async (signal = "SIGINT") => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
