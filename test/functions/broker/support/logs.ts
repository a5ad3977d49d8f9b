import { createLogger, type Logger } from "../../../../shared/log.ts";

/** A broker logger whose JSON lines are kept in memory, so tests can read and scan them. */
export function captureLogs(): { log: Logger; lines: string[]; text(): string; request(requestId: string | undefined): Record<string, unknown> | undefined } {
  const lines: string[] = [];
  const log = createLogger("broker", { level: "debug", destination: { write: (line: string) => void lines.push(line) } });
  return {
    log,
    lines,
    text: () => lines.join(""),
    /** The request line of the answer with this `x-request-id`. */
    request: (requestId) =>
      lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === "request" && line.requestId === requestId),
  };
}
