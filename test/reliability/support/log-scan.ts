/**
 * Every log line a reliability suite produces, from every process it starts, checked against every
 * password, token and secret key the suite has seen. A secret is any string the suite handed to the
 * product or got back from it that must never be written down.
 */
export interface LogScan {
  /** Remembers a value that must never appear in a log (short values are ignored: they match by chance). */
  secret(value: string | undefined): void;
  /** Registers a log source; `text` is read when the scan runs, so it sees every line written until then. */
  source(name: string, text: () => string): void;
  /** Where a secret (or anything shaped like a JWT) was found; empty when the logs are clean. */
  findings(): string[];
  lineCount(): number;
  secretCount(): number;
}

const minimumSecretLength = 12;
const jwtShape = /eyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]*/;

export function createLogScan(): LogScan {
  const secrets = new Set<string>();
  const sources = new Map<string, () => string>();
  return {
    secret(value) {
      if (value !== undefined && value.length >= minimumSecretLength) secrets.add(value);
    },
    source(name, text) {
      sources.set(name, text);
    },
    findings() {
      const found: string[] = [];
      for (const [name, text] of sources) {
        const body = text();
        for (const secret of secrets)
          if (body.includes(secret)) found.push(`${name}: a secret of ${secret.length} characters starting '${secret.slice(0, 4)}'`);
        const jwt = jwtShape.exec(body);
        if (jwt) found.push(`${name}: a JWT-shaped string starting '${jwt[0].slice(0, 12)}'`);
      }
      return found;
    },
    lineCount: () =>
      [...sources.values()].reduce(
        (sum, text) =>
          sum +
          text()
            .split("\n")
            .filter((line) => line.trim() !== "").length,
        0,
      ),
    secretCount: () => secrets.size,
  };
}
