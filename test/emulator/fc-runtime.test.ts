/**
 * The FC 3.0 instance model with real processes: small probe functions (a built-in handler module,
 * a custom-runtime HTTP server) that report what they were given and which process served them.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { executionRole, benchWorld } from "../../bench/fleet.ts";
import { startHttpTrigger, type FunctionSpec, type HttpTrigger } from "../../emulator/fc-runtime/trigger.ts";
import { startEmulator, type Emulator } from "../../emulator/index.ts";

const probeHandler = `
let initializedWith;
exports.initialize = (context, callback) => { initializedWith = context; callback(null, ""); };
exports.handler = async (event, context) => {
  const parsed = JSON.parse(event.toString());
  const delay = Number(parsed.queryParameters.delay ?? 0);
  await new Promise((resolve) => setTimeout(resolve, delay));
  return { statusCode: 200, headers: { "Content-Type": "application/json", "X-Probe": "yes" }, isBase64Encoded: false,
    body: JSON.stringify({ pid: process.pid, now: Date.now(), isBuffer: Buffer.isBuffer(event), event: parsed, context, initialized: initializedWith !== undefined, env: { fn: process.env.FC_FUNCTION_NAME, key: process.env.ALIBABA_CLOUD_ACCESS_KEY_ID } }) };
};
`;

const probeServer = `
const http = require("node:http");
http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/healthz") return res.end("ok");
  setTimeout(() => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ pid: process.pid, now: Date.now(), envKey: process.env.ALIBABA_CLOUD_ACCESS_KEY_ID, requestId: req.headers["x-fc-request-id"] }));
  }, Number(url.searchParams.get("delay") ?? 0));
}).listen(Number(process.env.FC_CUSTOM_LISTEN_PORT), "127.0.0.1");
`;

let emulator: Emulator;
let work: string;
const triggers: HttpTrigger[] = [];

beforeAll(async () => {
  emulator = await startEmulator({ world: benchWorld() });
  work = await mkdtemp(join(tmpdir(), "fc-runtime-"));
  await writeFile(join(work, "index.js"), probeHandler);
  await writeFile(join(work, "server.cjs"), probeServer);
});
afterEach(async () => {
  await Promise.all(triggers.splice(0).map((t) => t.close()));
});
afterAll(async () => {
  await emulator?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function deploy(spec: Partial<FunctionSpec>): Promise<HttpTrigger> {
  const trigger = await startHttpTrigger(
    { functionName: "probe", runtime: "nodejs20", codeDir: work, role: executionRole, ...spec },
    { clock: emulator.clock, assumeRoleForService: emulator.assumeRoleForService, sweepIntervalMs: 50 },
  );
  triggers.push(trigger);
  return trigger;
}

// The probes answer JSON whose shape is what the assertions check.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

interface ProbeAnswer {
  pid: number;
  now: number;
  isBuffer: boolean;
  event: Record<string, Json>;
  context: Record<string, Json>;
  initialized: boolean;
  env: { fn: string; key: string };
}

async function call(trigger: HttpTrigger, path = "/probe", init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: Json }> {
  const response = await fetch(`${trigger.url}${path}`, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("built-in runtime instances", () => {
  it("hands the handler FC 3.0's v1 HTTP event as a Buffer and the execution role's credentials in the context", async () => {
    const trigger = await deploy({});
    const { status, headers, body } = await call(trigger, "/v1/credentials?a=1&a=2&b=x", {
      method: "POST",
      headers: { authorization: "Bearer abc", "content-type": "application/json", "x-custom-thing": "v" },
      body: JSON.stringify({ registries: [] }),
    });
    expect(status).toBe(200);
    expect(headers.get("x-probe")).toBe("yes");
    expect(headers.get("x-fc-request-id")).toBeTruthy();
    const answer = body as ProbeAnswer;
    expect(answer.isBuffer).toBe(true);
    expect(answer.initialized).toBe(true);
    expect(answer.event).toMatchObject({
      version: "v1",
      rawPath: "/v1/credentials",
      body: JSON.stringify({ registries: [] }),
      isBase64Encoded: false,
      queryParameters: { a: "1,2", b: "x" },
      requestContext: { http: { method: "POST", path: "/v1/credentials" }, requestId: headers.get("x-fc-request-id") },
    });
    expect(answer.event.headers).toMatchObject({ Authorization: "Bearer abc", "Content-Type": "application/json", "X-Custom-Thing": "v" });
    expect(answer.event.headers.authorization).toBeUndefined();
    expect(answer.context.credentials.accessKeyId).toBeTruthy();
    expect(answer.context.credentials.securityToken).toBeTruthy();
    expect(answer.env).toEqual({ fn: "probe", key: answer.context.credentials.accessKeyId });
  });

  it("serves two overlapping requests with two instances, then reuses one: one request per instance", async () => {
    const trigger = await deploy({});
    const [a, b] = await Promise.all([call(trigger, "/?delay=400"), call(trigger, "/?delay=400")]);
    expect(a!.body.pid).not.toBe(b!.body.pid);
    const c = await call(trigger, "/");
    expect([a!.body.pid, b!.body.pid]).toContain(c.body.pid);
    expect(trigger.fn.counters()).toMatchObject({ invocations: 3, coldStarts: 2, liveInstances: 2, peakInstances: 2, throttled: 0 });
    expect(trigger.fn.counters().instanceSeconds).toBeGreaterThan(0.8);
  });

  it("reclaims an instance once the clock passes its idle time: its process ends and the next request is a cold start", async () => {
    const trigger = await deploy({ idleSeconds: 180 });
    const first = await call(trigger, "/");
    emulator.clock.advance(179_000);
    const second = await call(trigger, "/");
    expect(second.body.pid).toBe(first.body.pid);
    emulator.clock.advance(181_000);
    await expect.poll(() => trigger.fn.counters().liveInstances, { timeout: 5000 }).toBe(0);
    await expect.poll(() => alive(first.body.pid), { timeout: 5000 }).toBe(false);
    const third = await call(trigger, "/");
    expect(third.body.pid).not.toBe(first.body.pid);
    expect(trigger.fn.counters()).toMatchObject({ invocations: 3, coldStarts: 2, liveInstances: 1 });
  });

  it("runs the instance's Date.now() on the model's clock", async () => {
    const trigger = await deploy({});
    emulator.clock.advance(2 * 3600_000);
    const { body } = await call(trigger, "/");
    expect(Math.abs(body.now - emulator.clock.now())).toBeLessThan(2000);
    expect(Math.abs(body.now - Date.now())).toBeGreaterThan(3600_000);
  });

  it("answers 429 ResourceExhausted when a request would need an instance beyond maxInstances", async () => {
    const trigger = await deploy({ maxInstances: 1 });
    const [a, b] = await Promise.all([call(trigger, "/?delay=500"), new Promise((r) => setTimeout(r, 100)).then(() => call(trigger, "/"))]);
    expect(a!.status).toBe(200);
    expect(b!.status).toBe(429);
    expect(b!.body).toMatchObject({ errorCode: "ResourceExhausted" });
    expect(trigger.fn.counters()).toMatchObject({ invocations: 1, throttled: 1, peakInstances: 1 });
  });

  it("refuses instanceConcurrency above 1 for a built-in runtime, as FC 3.0 does", async () => {
    await expect(deploy({ instanceConcurrency: 2 })).rejects.toThrow(/nodejs20 instanceConcurrency is not supported/);
  });

  it("answers 502 and keeps no instance when the initializer fails", async () => {
    await writeFile(join(work, "broken.js"), `exports.initialize = (c, cb) => cb(new Error("no configuration")); exports.handler = async () => "never";`);
    const trigger = await deploy({ handler: "broken.handler", initializer: "broken.initialize" });
    const { status, body } = await call(trigger, "/");
    expect(status).toBe(502);
    expect(body.errorMessage).toMatch(/no configuration/);
    expect(trigger.fn.counters()).toMatchObject({ coldStarts: 1, liveInstances: 0 });
  });
});

describe("custom runtime instances", () => {
  const custom = (instanceConcurrency: number) =>
    deploy({ runtime: "custom.debian11", customRuntimeConfig: { command: process.execPath, args: ["server.cjs"] }, instanceConcurrency });

  it("sends up to instanceConcurrency overlapping requests to one server process", async () => {
    const trigger = await custom(2);
    const answers = await Promise.all([0, 1, 2].map(() => call(trigger, "/work?delay=600")));
    const pids = answers.map((a) => a.body.pid as number);
    expect(new Set(pids).size).toBe(2);
    expect(answers.every((a) => a.status === 200 && a.body.envKey && a.body.requestId)).toBe(true);
    expect(trigger.fn.counters()).toMatchObject({ invocations: 3, coldStarts: 2, peakInstances: 2 });
  });

  it("serves them all from one process when its concurrency allows", async () => {
    const trigger = await custom(5);
    const answers = await Promise.all([0, 1, 2, 3].map(() => call(trigger, "/work?delay=300")));
    expect(new Set(answers.map((a) => a.body.pid)).size).toBe(1);
    expect(trigger.fn.counters()).toMatchObject({ invocations: 4, coldStarts: 1 });
    expect(Math.abs(answers[0]!.body.now - emulator.clock.now())).toBeLessThan(2000);
  });
});
