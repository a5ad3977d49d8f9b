/**
 * Function Compute custom-runtime entry (`node index.mjs` in dist/broker-server): the broker's HTTP
 * server on `0.0.0.0:$FC_CUSTOM_LISTEN_PORT` (9000 by default), so one instance serves many requests
 * at once (`instanceConcurrency`) from one set of caches; InvokeFunction events (`acr-credential
 * renew`) arrive as `POST /invoke`. The configuration comes from
 * `BROKER_CONFIG` / `BROKER_CONFIG_FILE` as for the built-in handler; the broker's own identity from
 * the execution role's keys FC puts in `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `SECURITY_TOKEN`
 * (and, fresher, in each request's `x-fc-access-key-*` headers: server.ts).
 * A bad configuration or missing keys end the process with one line on stderr and exit code 2, which
 * FC reports as a failed instance start.
 */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { identityFromKeys, type Identity } from "../../shared/alibaba/identity.ts";
import { AcrCredentialError, isAcrCredentialError, oneLine } from "../../shared/errors.ts";
import { asyncStdout, createLogger } from "../../shared/log.ts";
import { loadConfig } from "./config.ts";
import { createRuntime, type BrokerRuntime } from "./runtime.ts";
import { serveHttp } from "./server.ts";

/** The execution role's temporary keys, as FC sets them for custom runtimes. */
export function identityFromEnvironment(env: Readonly<Record<string, string | undefined>>): Identity {
  const accessKeyId = env.ALIBABA_CLOUD_ACCESS_KEY_ID;
  const accessKeySecret = env.ALIBABA_CLOUD_ACCESS_KEY_SECRET;
  if (!accessKeyId || !accessKeySecret) {
    throw new AcrCredentialError(
      "ConfigInvalid",
      "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET are not set; give the function an execution role (see docs/deploy.md)",
    );
  }
  const securityToken = env.ALIBABA_CLOUD_SECURITY_TOKEN;
  return identityFromKeys({ accessKeyId, accessKeySecret, ...(securityToken ? { securityToken } : {}) });
}

/** The listening port: `FC_CUSTOM_LISTEN_PORT`, else 9000. */
export function listenPort(env: Readonly<Record<string, string | undefined>>): number {
  const text = env.FC_CUSTOM_LISTEN_PORT ?? "9000";
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port > 65535)
    throw new AcrCredentialError("ConfigInvalid", `FC_CUSTOM_LISTEN_PORT '${text}' is not a port number; unset it or set 0-65535`);
  return port;
}

async function main(): Promise<number> {
  const stdout = asyncStdout({ batchBytes: 8 * 1024 });
  const log = createLogger("broker", { destination: stdout });
  let runtime: BrokerRuntime | undefined;
  try {
    const identity = identityFromEnvironment(process.env);
    const port = listenPort(process.env);
    // A relative BROKER_CONFIG_FILE is resolved against the code directory, as for the built-in handler.
    const codeDir = process.env.FC_FUNC_CODE_PATH ?? dirname(fileURLToPath(import.meta.url));
    runtime = createRuntime({ loaded: loadConfig(process.env, codeDir), log, baseIdentity: identity });
    const server = await serveHttp(runtime, { port, host: "0.0.0.0", functionCompute: true });
    log.info({ clusters: runtime.config.clusters.map((c) => c.name), version: runtime.version, port }, "broker ready");
    console.error(`acr-credential broker: listening on ${server.url} for ${runtime.config.clusters.length} cluster(s)`);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    log.info({ signal }, "broker stopping");
    await server.close();
    return 0;
  } catch (error) {
    console.error(`acr-credential broker: ${oneLine(error)}`);
    return isAcrCredentialError(error) ? error.exitCode : 1;
  } finally {
    // The shared cache's connection would keep the process alive.
    await runtime?.close();
    // Request lines still queued behind a write in progress; none may be lost on SIGTERM.
    stdout.flushSync();
  }
}

process.exitCode = await main();
