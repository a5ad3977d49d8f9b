/**
 * One FC 3.0 function under the instance model: requests are placed by `InstancePool` on model time
 * and served by real processes (`instances.ts`) running the built artefact. `invoke(request, at)`
 * takes the arrival time, so a real-time HTTP trigger (`at` = the clock's now) and a simulation that
 * replays a fleet's schedule (`at` = the scheduled time) share every rule and counter. In model
 * time a request starts at its arrival, or when its instance finished starting if that is later,
 * and lasts the real time its instance took to answer it (the cold start too, for the first one).
 */
import { randomUUID } from "node:crypto";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Clock } from "../clock.ts";
import { fcErrorResponse, httpTriggerEvent, type TriggerRequest, type TriggerResponse } from "./event.ts";
import { startBuiltinInstance, startCustomInstance, type Instance, type RoleCredentials } from "./instances.ts";
import { InstancePool, type PoolCounters, type PoolInstance } from "./pool.ts";

export interface FunctionSpec {
  functionName: string;
  /** `nodejs20` (any built-in Node.js runtime) or `custom.debian11` (any custom runtime). */
  runtime: string;
  /**
   * Built-in: the code package, copied once to a folder of its own as FC unpacks it (so no
   * package.json around it changes how require() reads it); custom: the command's working directory.
   */
  codeDir: string;
  /** Built-in runtimes: `index.handler` and the initializer, default `index.initialize`. */
  handler?: string;
  initializer?: string;
  customRuntimeConfig?: { command: string; args?: string[] };
  /** Custom runtimes only, [1, 200]; built-in runtimes serve one request per instance. */
  instanceConcurrency?: number;
  /** Default 100, the per-region instance quota of a new account. */
  maxInstances?: number;
  /** Idle time after which an instance is reclaimed; default 300 (FC: "usually 3 to 5 minutes"). */
  idleSeconds?: number;
  /**
   * Instances kept once started, never reclaimed: FC 3.0's provisioned instances (`provisionConfig`
   * `defaultTarget` in s.yaml) or scaling `minInstances`. Billed while idle too (at FC's idle rate
   * when CPU is not always allocated); the counters bill only their busy time. Default 0.
   */
  minInstances?: number;
  environmentVariables?: Record<string, string>;
  /** Execution role ARN: its credentials go to `context.credentials` and the ALIBABA_CLOUD_* variables. */
  role?: string;
  region?: string;
  accountId?: string;
  memorySize?: number;
  timeout?: number;
}

export interface FunctionDeps {
  clock: Clock;
  /** Temporary credentials of the execution role, as FC's service principal assumes it. */
  roleCredentials: (roleArn: string, sessionName: string) => RoleCredentials;
}

export interface InvokeOutcome {
  response: TriggerResponse;
  cold: boolean;
  throttled: boolean;
  /** Model time the answer left the instance. */
  endAt: number;
}

export interface FcFunction {
  readonly spec: FunctionSpec;
  invoke(request: TriggerRequest, at?: number): Promise<InvokeOutcome>;
  /** Reclaims instances idle for `idleSeconds` at `at` (default now) and stops their processes. */
  sweep(at?: number): Promise<number>;
  counters(at?: number): PoolCounters;
  /** Instances alive now (cheaper than `counters`). */
  liveInstances(): number;
  close(): Promise<void>;
}

const isCustom = (runtime: string) => runtime.startsWith("custom");

export function validateSpec(spec: FunctionSpec): void {
  const concurrency = spec.instanceConcurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 200)
    throw new Error(`instanceConcurrency must be an integer in [1, 200], got ${concurrency}`);
  // FC 3.0 takes instanceConcurrency only for custom runtimes and custom containers.
  if (concurrency > 1 && !isCustom(spec.runtime))
    throw new Error(`${spec.runtime} instanceConcurrency is not supported: built-in runtimes serve one request per instance`);
  if (isCustom(spec.runtime) && spec.customRuntimeConfig === undefined) throw new Error("a custom runtime needs customRuntimeConfig.command");
}

export function createFcFunction(spec: FunctionSpec, deps: FunctionDeps): FcFunction {
  validateSpec(spec);
  const region = spec.region ?? "cn-hangzhou";
  const accountId = spec.accountId ?? "1000000000000001";
  const pool = new InstancePool({
    concurrency: spec.instanceConcurrency ?? 1,
    maxInstances: spec.maxInstances ?? 100,
    idleMs: (spec.idleSeconds ?? 300) * 1000,
    minInstances: spec.minInstances ?? 0,
  });
  const processes = new Map<PoolInstance, Promise<Instance>>();
  const credentials = new Map<PoolInstance, RoleCredentials | undefined>();
  /** Model time each instance finished its cold start. */
  const readyAt = new Map<PoolInstance, number>();
  const stopping = new Set<Promise<void>>();
  const offset = () => deps.clock.now() - Date.now();
  let deployed: Promise<string> | undefined;
  const deployedCode = () =>
    (deployed ??= mkdtemp(join(tmpdir(), `fc-code-${spec.functionName}-`)).then(async (dir) => {
      await cp(spec.codeDir, dir, { recursive: true });
      return dir;
    }));

  async function start(instance: PoolInstance): Promise<Instance> {
    const role = spec.role === undefined ? undefined : deps.roleCredentials(spec.role, `fc-${spec.functionName}-${instance.id}`.slice(0, 32));
    credentials.set(instance, role);
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      ...spec.environmentVariables,
      FC_FUNCTION_NAME: spec.functionName,
      FC_REGION: region,
      FC_ACCOUNT_ID: accountId,
      FC_INSTANCE_ID: `c-${instance.id}-${randomUUID().slice(0, 8)}`,
      FC_FUNCTION_MEMORY_SIZE: String(spec.memorySize ?? 512),
      ...(role
        ? {
            ALIBABA_CLOUD_ACCESS_KEY_ID: role.accessKeyId,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET: role.accessKeySecret,
            ALIBABA_CLOUD_SECURITY_TOKEN: role.securityToken,
          }
        : {}),
    };
    if (isCustom(spec.runtime)) {
      const config = spec.customRuntimeConfig!;
      return startCustomInstance({ env, clockOffsetMs: offset, command: config.command, args: config.args ?? [], cwd: spec.codeDir });
    }
    const codeDir = await deployedCode();
    return startBuiltinInstance({
      env: { ...env, FC_FUNC_CODE_PATH: codeDir },
      clockOffsetMs: offset,
      codeDir,
      handler: spec.handler ?? "index.handler",
      initializer: spec.initializer ?? "index.initialize",
      context: contextFor(instance, `init-${randomUUID()}`),
    });
  }

  function contextFor(instance: PoolInstance, requestId: string): Record<string, unknown> {
    const role = credentials.get(instance);
    return {
      requestId,
      credentials: role ? { ...role } : undefined,
      function: { name: spec.functionName, handler: spec.handler ?? "index.handler", memory: spec.memorySize ?? 512, timeout: spec.timeout ?? 10 },
      region,
      accountId,
    };
  }

  function stop(instance: PoolInstance): void {
    const running = processes.get(instance);
    processes.delete(instance);
    credentials.delete(instance);
    readyAt.delete(instance);
    if (running === undefined) return;
    const done = running
      .then(
        (p) => p.stop(),
        () => undefined,
      )
      .finally(() => stopping.delete(done));
    stopping.add(done);
  }

  return {
    spec,
    async invoke(request, at = deps.clock.now()) {
      const requestId = randomUUID();
      for (const idle of pool.reclaim(at)) stop(idle);
      const placed = pool.acquire(at);
      if ("throttled" in placed) {
        const response = fcErrorResponse(
          429,
          "ResourceExhausted",
          `the function ${spec.functionName} reached its limit of ${spec.maxInstances ?? 100} instances; retry later or raise the limit`,
          requestId,
        );
        return { response, cold: false, throttled: true, endAt: at };
      }
      const began = performance.now();
      const { instance, cold, request: span } = placed;
      // A request placed on a starting instance waits for it in model time too: it starts at the
      // later of its arrival and the instance's readiness, whenever it really gets to run.
      if (cold) {
        processes.set(
          instance,
          start(instance).then((running) => {
            readyAt.set(instance, at + (performance.now() - began));
            return running;
          }),
        );
      }
      let serviceBegan = began;
      let modelStart = at;
      const failed = (error: unknown) =>
        fcErrorResponse(502, "FunctionError", (error instanceof Error ? error.message : String(error)).split("\n")[0]!, requestId);
      let response: TriggerResponse;
      try {
        const running = await processes.get(instance)!;
        serviceBegan = performance.now();
        modelStart = Math.max(at, readyAt.get(instance) ?? at);
        const event = isCustom(spec.runtime) ? {} : httpTriggerEvent(request, { requestId, accountId, region, triggerId: `${spec.functionName}-http`, at });
        try {
          response = await running.invoke({
            event,
            context: contextFor(instance, requestId),
            http: request,
            requestId,
            credentials: credentials.get(instance)!,
          });
        } catch (error) {
          // The handler threw: FC answers for the function; the instance stays.
          response = failed(error);
        }
      } catch (error) {
        // The instance did not start (initializer failed, server never healthy): it serves nothing.
        pool.discard(instance);
        stop(instance);
        response = failed(error);
      }
      const endAt = modelStart + (performance.now() - serviceBegan);
      pool.finish(span, endAt);
      return { response, cold, throttled: false, endAt };
    },
    async sweep(at = deps.clock.now()) {
      const idle = pool.reclaim(at);
      for (const instance of idle) stop(instance);
      return idle.length;
    },
    counters: (at = deps.clock.now()) => pool.counters(at),
    liveInstances: () => pool.live.length,
    async close() {
      for (const instance of [...processes.keys()]) stop(instance);
      await Promise.all([...stopping]);
      if (deployed) await rm(await deployed, { recursive: true, force: true });
    },
  };
}
