import { createHash, randomBytes } from "node:crypto";
import type { SessionPrincipal } from "./principal.ts";

/** Temporary credentials STS handed out, kept so later requests signed with them can be authenticated. */
export interface StsSession {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken: string;
  principal: SessionPrincipal;
}

/** What a new session is: its principal, less the kind every session has. */
export type SessionRequest = Omit<SessionPrincipal, "kind">;

export interface SessionStore {
  issue(request: SessionRequest): StsSession;
  get(accessKeyId: string): StsSession | undefined;
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789";
function randomText(length: number): string {
  const bytes = randomBytes(length);
  return Array.from(bytes, (byte) => alphabet[byte % alphabet.length]).join("");
}

/** A stable numeric role id, like RAM's 17-19 digit ones, derived from the role's identity. */
export function roleId(account: string, roleName: string): string {
  const digest = createHash("sha256").update(`${account}:${roleName.toLowerCase()}`).digest();
  return (digest.readBigUInt64BE(0) % 10n ** 17n).toString().padStart(17, "3");
}

/** Keeps expired sessions for a day so their use is answered "expired", not "unknown key". */
export function createSessionStore(now: () => number): SessionStore {
  const sessions = new Map<string, StsSession>();
  const graceMs = 24 * 3600_000;
  let issued = 0;
  return {
    issue(request) {
      if (++issued % 1000 === 0) for (const [id, session] of sessions) if (session.principal.expiresAt + graceMs < now()) sessions.delete(id);
      const session: StsSession = {
        accessKeyId: `STS.${randomText(28)}`,
        accessKeySecret: randomText(44),
        securityToken: `CAIS${randomBytes(180).toString("base64")}`,
        principal: { kind: "assumed-role", ...request },
      };
      sessions.set(session.accessKeyId, session);
      return session;
    },
    get: (accessKeyId) => sessions.get(accessKeyId),
  };
}
