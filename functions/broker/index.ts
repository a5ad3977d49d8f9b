/**
 * Function Compute entry point (`index.handler`, initializer `index.initialize`). The
 * configuration comes from `BROKER_CONFIG` or `BROKER_CONFIG_FILE` and is parsed once per instance.
 */
import { createLogger } from "../../shared/log.ts";
import { oneLine } from "../../shared/errors.ts";
import { loadConfig } from "./config.ts";
import type { FcContext } from "./fc-event.ts";
import { createHandler } from "./handler.ts";
import { createRuntime, type BrokerRuntime } from "./runtime.ts";

const log = createLogger("broker");
let built: BrokerRuntime | undefined;
let failure: unknown;

function runtime(): BrokerRuntime {
  if (built) return built;
  if (failure !== undefined) throw failure;
  try {
    // A relative BROKER_CONFIG_FILE is resolved against the deployed code directory.
    built = createRuntime({ loaded: loadConfig(process.env, process.env.FC_FUNC_CODE_PATH ?? process.cwd()), log });
    // Counts, not names: this line must not grow with the fleet.
    log.info({ clusters: built.config.clusters.length, clusterGroups: built.config.clusterGroups.length, version: built.version }, "broker ready");
    return built;
  } catch (error) {
    failure = error;
    log.error({ err: error }, "broker cannot start");
    throw error;
  }
}

export const handler = createHandler(runtime, () => log);

/** FC initializer: builds the runtime before the first request, so a bad configuration fails the instance start. */
export function initialize(_context: FcContext, callback: (error: Error | null, result?: string) => void): void {
  try {
    runtime();
    callback(null, "");
  } catch (error) {
    callback(error instanceof Error ? error : new Error(oneLine(error)));
  }
}
