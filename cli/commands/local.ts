import type { Command } from "../args.ts";
import { parseFlags, parsePort } from "../args.ts";

const usage = `Usage: acr-credential local [--port 9000]

Starts the local sandbox: the Alibaba Cloud emulator with a demo world, the broker on
127.0.0.1:PORT and a demo cluster whose signing key is kept under .local/.`;

export const command: Command = {
  summary: "start the local sandbox",
  usage,
  async run(argv) {
    const { values } = parseFlags("local", argv, { port: { type: "string" } });
    const port = parsePort("local", values.port, 9000);
    console.log(`acr-credential local: the sandbox (emulator + broker on 127.0.0.1:${port}) is not built yet; nothing started.`);
    return 0;
  },
};
