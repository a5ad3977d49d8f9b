/**
 * An FC 3.0 HTTP trigger on 127.0.0.1 in front of one function of the instance model: every request
 * is an invocation at the clock's now, and idle instances are reclaimed as the clock passes their
 * idle time (checked every `sweepIntervalMs` of real time, and before every request).
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { Clock } from "../clock.ts";
import { createFcFunction, type FcFunction, type FunctionSpec } from "./function.ts";
import type { RoleCredentials } from "./instances.ts";

export type { FunctionSpec } from "./function.ts";
export type { PoolCounters } from "./pool.ts";

export interface HttpTrigger {
  /** `http://127.0.0.1:PORT`, the function's `<trigger>.fcapp.run` address. */
  url: string;
  fn: FcFunction;
  close(): Promise<void>;
}

export interface TriggerDeps {
  clock: Clock;
  /** How the emulator's STS issues the execution role's credentials to FC (`Emulator.assumeRoleForService`). */
  assumeRoleForService: (roleArn: string, service: string, sessionName: string, durationSeconds?: number) => RoleCredentials;
  sweepIntervalMs?: number;
}

/** FC hands out execution-role credentials valid for 36 hours (the role's maximum session caps it). */
const roleSessionSeconds = 36 * 3600;

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

export async function startHttpTrigger(spec: FunctionSpec, deps: TriggerDeps): Promise<HttpTrigger> {
  const fn = createFcFunction(spec, {
    clock: deps.clock,
    roleCredentials: (role, session) => deps.assumeRoleForService(role, "fc.aliyuncs.com", session, roleSessionSeconds),
  });
  const server = createServer(async (request, response) => {
    try {
      const body = await readBody(request);
      const outcome = await fn.invoke({
        method: request.method ?? "GET",
        url: request.url ?? "/",
        headers: request.headers,
        body,
        sourceIp: request.socket.remoteAddress ?? "127.0.0.1",
      });
      response.writeHead(outcome.response.status, outcome.response.headers).end(outcome.response.body);
    } catch (error) {
      response
        .writeHead(500, { "content-type": "application/json" })
        .end(JSON.stringify({ errorCode: "InternalServerError", errorMessage: error instanceof Error ? error.message : String(error) }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const sweeper = setInterval(() => void fn.sweep(), deps.sweepIntervalMs ?? 1000);
  sweeper.unref();
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    fn,
    async close() {
      clearInterval(sweeper);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await fn.close();
    },
  };
}
