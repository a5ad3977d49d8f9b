/**
 * How the broker is deployed on Function Compute 3.0 in the fleet benchmark: the built-in runtime
 * handler (`dist/broker`, one request per instance) and the custom-runtime HTTP server with
 * instance concurrency, `dist/broker-server/index.mjs` as s.yaml deploys it (`node index.mjs`,
 * listening on `FC_CUSTOM_LISTEN_PORT`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export interface CustomServer {
  codeDir: string;
  customRuntimeConfig: { command: string; args: string[] };
  /** Which program served: the custom-runtime artefact. */
  artefact: "dist/broker-server";
}

/** The custom-runtime artefact in `serverDir` (default dist/broker-server); missing, it says how to build it. */
export function customServer(repo: string, serverDir = join(repo, "dist/broker-server")): CustomServer {
  if (!existsSync(join(serverDir, "index.mjs")))
    throw new Error(`${serverDir}/index.mjs is missing; run \`npm run build\` (or \`node build.mjs broker-server\`) first`);
  return { codeDir: serverDir, customRuntimeConfig: { command: process.execPath, args: ["index.mjs"] }, artefact: "dist/broker-server" };
}
