/**
 * The processes behind FC instances. A built-in runtime instance is `builtin-runner.mjs` loading the
 * function's code and talking over an IPC channel; a custom runtime instance is the function's own
 * HTTP server (`customRuntimeConfig.command`), listening on `FC_CUSTOM_LISTEN_PORT`, ready when
 * `GET /healthz` answers 200. Both get `clock-preload.mjs`, so their `Date.now()` follows the model.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { triggerResponse, type TriggerRequest, type TriggerResponse } from "./event.ts";
import { sleep } from "../../shared/retry.ts";

export interface RoleCredentials {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken: string;
}

export interface InstanceEnv {
  /** The function's environment variables plus what FC sets (FC_*, the role's ALIBABA_CLOUD_* keys). */
  env: Record<string, string>;
  /** Model time minus real time, for the instance's `Date.now()`. */
  clockOffsetMs: () => number;
}

export interface Instance {
  /** Serves one request; resolves with the HTTP answer (built-in: the handler's return value as the trigger maps it). */
  invoke(request: {
    event: Record<string, unknown>;
    context: Record<string, unknown>;
    http: TriggerRequest;
    requestId: string;
    credentials: RoleCredentials;
  }): Promise<TriggerResponse>;
  stop(): Promise<void>;
}

const runnerFile = fileURLToPath(new URL("./builtin-runner.mjs", import.meta.url));
const preloadUrl = new URL("./clock-preload.mjs", import.meta.url).href;

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** The last few kB a child wrote to stderr, for error messages. */
function stderrTail(child: ChildProcess): () => string {
  let tail = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    tail = (tail + chunk.toString("utf8")).slice(-2000);
  });
  return () => tail.trim();
}

type Message = { type: string; id?: number; value?: unknown; errorMessage?: string; errorType?: string };

/** Request/answer over the IPC channel, failing every pending call if the child exits. */
function ipc(child: ChildProcess, describe: () => string) {
  const waiting = new Map<string, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  child.on("message", (message: Message) => {
    const key = message.id === undefined ? message.type : String(message.id);
    const entry = waiting.get(key) ?? (message.type === "init-error" ? waiting.get("ready") : undefined);
    if (entry === undefined) return;
    waiting.delete(message.type === "init-error" ? "ready" : key);
    entry.resolve(message);
  });
  child.once("exit", (code, signal) => {
    for (const entry of waiting.values()) entry.reject(new Error(`the instance exited (${code ?? signal}): ${describe()}`));
    waiting.clear();
  });
  return (message: Record<string, unknown>, key: string): Promise<Message> =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`the instance has exited: ${describe()}`));
      waiting.set(key, { resolve, reject });
      child.send(message);
    });
}

export async function startBuiltinInstance(
  options: InstanceEnv & { codeDir: string; handler: string; initializer: string; context: Record<string, unknown> },
): Promise<Instance> {
  const child = spawn(process.execPath, [runnerFile, options.codeDir, options.handler, options.initializer], {
    cwd: options.codeDir,
    env: { ...options.env, FC_EMULATOR_CLOCK_OFFSET_MS: String(options.clockOffsetMs()) },
    // stdout is the function's log, as FC would ship it to SLS; nobody reads it here.
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  const tail = stderrTail(child);
  const call = ipc(child, tail);
  let nextId = 1;
  const ready = await call({ type: "init", context: options.context }, "ready").catch(async (error: Error) => {
    await stopChild(child);
    throw error;
  });
  if (ready.type === "init-error") {
    await stopChild(child);
    throw new Error(`the initializer failed: ${ready.errorType}: ${ready.errorMessage}`);
  }
  return {
    async invoke(request) {
      const id = nextId++;
      await call({ type: "clock", id, offsetMs: options.clockOffsetMs() }, String(id));
      const answer = await call({ type: "invoke", id: -id, event: JSON.stringify(request.event), context: request.context }, String(-id));
      if (answer.type === "error") throw Object.assign(new Error(answer.errorMessage ?? "the handler failed"), { name: answer.errorType ?? "Error" });
      return triggerResponse(answer.value, request.requestId);
    },
    stop: () => stopChild(child),
  };
}

/** A port free right now on 127.0.0.1 (FC gives each instance its own network namespace instead). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startCustomInstance(
  options: InstanceEnv & { command: string; args: readonly string[]; cwd: string; startTimeoutMs?: number },
): Promise<Instance> {
  const port = await freePort();
  const nodeOptions = [options.env.NODE_OPTIONS, `--import=${preloadUrl}`].filter(Boolean).join(" ");
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: { ...options.env, FC_CUSTOM_LISTEN_PORT: String(port), NODE_OPTIONS: nodeOptions, FC_EMULATOR_CLOCK_OFFSET_MS: String(options.clockOffsetMs()) },
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  const tail = stderrTail(child);
  const call = ipc(child, tail);
  let nextId = 1;
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the custom runtime exited (${child.exitCode ?? child.signalCode}) before it was ready: ${tail()}`);
    const healthy = await fetch(`${base}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (healthy) break;
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`the custom runtime did not answer GET /healthz on port ${port} in time: ${tail()}`);
    }
    await sleep(20);
  }
  return {
    async invoke({ http, requestId, credentials }) {
      const id = nextId++;
      await call({ type: "clock", id, offsetMs: options.clockOffsetMs() }, String(id));
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(http.headers))
        if (value !== undefined && name !== "host" && name !== "connection") headers[name] = Array.isArray(value) ? value.join(",") : value;
      // What FC adds to a request it forwards to a custom runtime.
      Object.assign(headers, {
        "x-fc-request-id": requestId,
        "x-fc-access-key-id": credentials.accessKeyId,
        "x-fc-access-key-secret": credentials.accessKeySecret,
        "x-fc-security-token": credentials.securityToken,
      });
      const method = http.method.toUpperCase();
      const response = await fetch(`${base}${http.url}`, {
        method,
        headers,
        ...(method === "GET" || method === "HEAD" ? {} : { body: new Uint8Array(http.body) }),
      });
      const answer: TriggerResponse = { status: response.status, headers: {}, body: Buffer.from(await response.arrayBuffer()) };
      response.headers.forEach((value, name) => {
        if (name !== "content-length" && name !== "transfer-encoding" && name !== "connection" && name !== "keep-alive") answer.headers[name] = value;
      });
      return answer;
    },
    stop: () => stopChild(child),
  };
}
