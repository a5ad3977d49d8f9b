#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript, loaded through tsx so `npm start` needs no build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
