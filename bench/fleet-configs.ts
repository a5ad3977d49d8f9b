import { existsSync } from "node:fs";
import { join } from "node:path";

/**
 * How the broker is deployed on Function Compute 3.0 in the fleet benchmark: the built-in runtime
 * handler (`dist/broker`, one request per instance) and the custom-runtime HTTP server with
 * instance concurrency. The server is `dist/broker-server/index.mjs` when it has been built, else
 * the same business code through `acr-credential broker` listening on `FC_CUSTOM_LISTEN_PORT`.
 */

export interface CustomServer {
  codeDir: string;
  customRuntimeConfig: { command: string; args: string[] };
  /** Which program served: the custom-runtime artefact or the CLI's broker command. */
  artefact: "dist/broker-server" | "acr-credential broker";
}

export function customServer(repo: string): CustomServer {
  const bundle = join(repo, "dist/broker-server/index.mjs");
  if (existsSync(bundle)) return { codeDir: join(repo, "dist/broker-server"), customRuntimeConfig: { command: process.execPath, args: ["index.mjs"] }, artefact: "dist/broker-server" };
  // FC runs a custom runtime's command through a shell; the port comes from FC_CUSTOM_LISTEN_PORT.
  const command = `exec "${process.execPath}" bin/acr-credential.mjs broker --port "$FC_CUSTOM_LISTEN_PORT"`;
  return { codeDir: repo, customRuntimeConfig: { command: "/bin/sh", args: ["-c", command] }, artefact: "acr-credential broker" };
}
