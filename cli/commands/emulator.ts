import { pino } from "pino";
import type { Command, Options } from "../args.ts";
import { parseFlags, parsePort, untilSignal } from "../args.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";

const usage = `Usage: acr-credential emulator --world FILE [--port 0] [--https-port 0] [--registry] [--state-dir DIR]

Runs the local Alibaba Cloud emulator (STS, Container Registry, Function Compute and the registry
token realm) on 127.0.0.1 for the RAM world described in FILE (format: docs/emulator.md).
When it is ready it prints one JSON line with its endpoints; request logs go to stderr as JSON.
Ctrl-C or SIGTERM stops it.

  --world FILE        the world YAML, e.g. emulator/worlds/demo.yaml (required)
  --port N            HTTP port for every API; 0 picks a free one (default 0)
  --https-port N      HTTPS port serving the same APIs; 0 picks a free one (default 0)
  --registry          also start a docker-registry that accepts the emulator's credentials
  --state-dir DIR     keep certificates and registry data in DIR instead of a temporary directory`;

/** The flags, as parsed and as the README's command table lists them. */
const options = {
  world: { type: "string" },
  port: { type: "string" },
  "https-port": { type: "string" },
  registry: { type: "boolean" },
  "state-dir": { type: "string" },
} satisfies Options;

export const command: Command = {
  usage,
  options,
  async run(argv) {
    const { values } = parseFlags("emulator", argv, options);
    if (values.world === undefined)
      throw new AcrCredentialError("UsageError", "--world FILE is required, e.g. --world emulator/worlds/demo.yaml; see 'acr-credential emulator --help'");
    const port = parsePort("emulator", values.port, 0);
    const httpsPort = parsePort("emulator", values["https-port"], 0);
    // Loaded here rather than at the top so `--help` and flag errors stay instant.
    const { loadWorld, startEmulator } = await import("../../emulator/index.ts");
    const world = await loadWorld(values.world);
    const logger = createLogger("emulator", { destination: pino.destination(2) });
    const emulator = await startEmulator({
      world,
      port,
      httpsPort,
      logger,
      registry: values.registry === true,
      ...(values["state-dir"] === undefined ? {} : { stateDir: values["state-dir"] }),
    });
    process.stdout.write(`${JSON.stringify(emulator.endpoints)}\n`);
    logger.info({ endpoints: emulator.endpoints, world: values.world }, "emulator ready");
    const signal = await untilSignal();
    logger.info({ signal }, "emulator stopping");
    await emulator.close();
    return 0;
  },
};
