import type { Command } from "../args.ts";
import { parseFlags } from "../args.ts";
import { AcrCredentialError } from "../../shared/errors.ts";

const usage = `Usage: acr-credential emulator --world FILE [--port 0]`;

export const command: Command = {
  summary: "run the local Alibaba Cloud emulator alone",
  usage,
  async run(argv) {
    parseFlags("emulator", argv, { world: { type: "string" }, port: { type: "string" } });
    throw new AcrCredentialError("Internal", "the emulator is not built yet");
  },
};
