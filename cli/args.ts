import { parseArgs, type ParseArgsConfig } from "node:util";
import { AcrCredentialError, oneLine } from "../shared/errors.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;

export interface Command {
  /** Full usage text for `acr-credential <command> --help`. */
  usage: string;
  /** Its flags (`--help` is added to every command). */
  options: Options;
  run(argv: string[]): Promise<number>;
}

/** `util.parseArgs` with errors turned into a one-line UsageError that points at `--help`. */
export function parseFlags<O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false });
  } catch (error) {
    throw new AcrCredentialError("UsageError", `${oneLine(error)}; see 'acr-credential ${command} --help'`);
  }
}

/** Parses a `--port` value; 0 means "any free port". */
export function parsePort(command: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AcrCredentialError("UsageError", `--port must be an integer from 0 to 65535, got '${value}'; see 'acr-credential ${command} --help'`);
  }
  return port;
}

/** Resolves when the process is asked to stop (Ctrl-C or SIGTERM). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => resolve(signal);
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
