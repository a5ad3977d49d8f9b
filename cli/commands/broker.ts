import * as credentials from "@alicloud/credentials";
import { loadConfig, loadConfigFile, type LoadedConfig } from "../../functions/broker/config.ts";
import { createRuntime } from "../../functions/broker/runtime.ts";
import { serveHttp } from "../../functions/broker/server.ts";
import type { Identity } from "../../shared/alibaba/identity.ts";
import { cjsDefault } from "../../shared/alibaba/sdk.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import { asyncStdout, createLogger } from "../../shared/log.ts";
import type { Command, Options } from "../args.ts";
import { parseFlags, parsePort, untilSignal } from "../args.ts";

const usage = `Usage: acr-credential broker [--config FILE] [--port 9000] [--host 127.0.0.1]

Serves the broker's HTTP API (POST /v1/credentials, GET /healthz) over plain HTTP with the same
business code as on Function Compute (the custom-runtime artefact's server), against real Alibaba
Cloud. Put TLS in front of it.

  --config FILE   the broker configuration (YAML or JSON); default: BROKER_CONFIG or BROKER_CONFIG_FILE
  --port N        port to listen on (0 = any free port); default 9000
  --host H        address to listen on; default 127.0.0.1

The broker's own identity comes from the Alibaba Cloud default credential chain: ALIBABA_CLOUD_ACCESS_KEY_ID /
ALIBABA_CLOUD_ACCESS_KEY_SECRET (/ ALIBABA_CLOUD_SECURITY_TOKEN), an RRSA/OIDC role, a CLI profile or the ECS
instance's RAM role. Logs are JSON lines on stdout. With \`sharedCache\` in the configuration, BROKER_CACHE_KEY
(<keyId>:<base64 of 32 bytes>; during a rotation also BROKER_CACHE_PREVIOUS_KEY) is the key its values are
encrypted with, and BROKER_CACHE_PASSWORD may hold the Redis password.`;

/** The default credential chain, checked once now so a missing identity is a start-up error. */
export async function defaultChainIdentity(): Promise<Identity> {
  const Credential = cjsDefault<typeof credentials.default.default>(credentials.default);
  const provider = new Credential();
  try {
    await provider.getCredential();
  } catch {
    throw new AcrCredentialError(
      "ConfigInvalid",
      "the default credential chain found no Alibaba Cloud credentials (environment, OIDC, CLI profile, ECS RAM role); set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, or run where a RAM role is attached",
    );
  }
  return { kind: "provider", provider };
}

/** The flags, as parsed and as the README's command table lists them. */
const options = { config: { type: "string" }, port: { type: "string" }, host: { type: "string" } } satisfies Options;

export const command: Command = {
  usage,
  options,
  async run(argv) {
    const { values } = parseFlags("broker", argv, options);
    const port = parsePort("broker", values.port ?? process.env.FC_SERVER_PORT, 9000);
    const loaded: LoadedConfig = values.config ? loadConfigFile(values.config) : loadConfig(process.env);
    const stdout = asyncStdout({ batchBytes: 8 * 1024 });
    const log = createLogger("broker", { destination: stdout });
    const runtime = createRuntime({ loaded, log, baseIdentity: await defaultChainIdentity() });
    const server = await serveHttp(runtime, { port, host: values.host ?? "127.0.0.1" });
    console.error(
      `acr-credential broker: listening on ${server.url} for ${runtime.config.clusters.length} cluster(s) and ${runtime.config.clusterGroups.length} cluster group(s)`,
    );
    await untilSignal();
    await server.close();
    await runtime.close();
    // Request lines still queued behind a write in progress; none may be lost on SIGTERM or SIGINT.
    stdout.flushSync();
    return 0;
  },
};
