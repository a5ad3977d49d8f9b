import { AcrCredentialError, oneLine } from "../shared/errors.ts";
import { productVersion } from "../shared/version.ts";
import type { Command } from "./args.ts";

// Each command is loaded on demand so that, say, `acr-credential token` does not load the Kubernetes client.
/** Each command with the one line `acr-credential --help` shows for it; its module is loaded only when run. */
export const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  local: {
    summary: "start the local sandbox: emulator, broker and a demo cluster (npm start)",
    load: async () => (await import("./commands/local.ts")).command,
  },
  emulator: { summary: "run the local Alibaba Cloud emulator alone", load: async () => (await import("./commands/emulator.ts")).command },
  refresh: {
    summary: "keep registry pull Secrets fresh and attached in a cluster (what the CronJob runs)",
    load: async () => (await import("./commands/refresh.ts")).command,
  },
  broker: { summary: "serve the broker over HTTP with the default credential chain", load: async () => (await import("./commands/broker.ts")).command },
  token: { summary: "print a demo-cluster JWT (sandbox only)", load: async () => (await import("./commands/token.ts")).command },
  doctor: { summary: "check a cluster's refresher setup end to end and print what to fix", load: async () => (await import("./commands/doctor.ts")).command },
  renew: { summary: "refresh the broker's cached credentials now through FC InvokeFunction", load: async () => (await import("./commands/renew.ts")).command },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(([name, { summary }]) => `  ${name.padEnd(width)}  ${summary}`);
  return [
    "Usage: acr-credential <command> [options]",
    "",
    "Commands:",
    ...lines,
    "",
    "Run 'acr-credential <command> --help' for a command's options, 'acr-credential --version' for the version.",
  ].join("\n");
}

/** Runs the CLI and returns the process exit code; user mistakes print one line, never a stack. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") {
    console.log(productVersion);
    return 0;
  }
  const entry = commands[name];
  if (entry === undefined) {
    console.error(`acr-credential: unknown command '${name}'; run 'acr-credential --help' for the list`);
    return 2;
  }
  try {
    const command = await entry.load();
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(command.usage);
      return 0;
    }
    return await command.run(rest);
  } catch (error) {
    if (error instanceof AcrCredentialError) {
      console.error(`acr-credential ${name}: ${oneLine(error)} [${error.code}]`);
      return error.exitCode;
    }
    console.error(`acr-credential ${name}: internal error: ${oneLine(error)}`);
    if (process.env.ACR_CREDENTIAL_DEBUG === "1" && error instanceof Error) console.error(error.stack);
    return 1;
  }
}
