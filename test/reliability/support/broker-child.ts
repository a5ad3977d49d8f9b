import { main } from "../../../cli/main.ts";

/**
 * `acr-credential broker` exactly as the CLI runs it, plus one thing a test needs from outside:
 * on the IPC message "memory" it collects garbage (node --expose-gc) and reports
 * `process.memoryUsage()`, so a leak shows as retained heap rather than as allocator noise.
 */
process.on("message", (message) => {
  if (message !== "memory") return;
  (globalThis as { gc?: () => void }).gc?.();
  process.send?.({ memory: process.memoryUsage() });
});

process.exitCode = await main(["broker", ...process.argv.slice(2)]);
process.disconnect?.();
