/**
 * Temporary registry passwords handed out by CR GetAuthorizationToken (Enterprise) and `GET /tokens`
 * (Personal). The registry token realm looks them up; what a password may do is decided from the
 * caller's `cr:PullRepository` / `cr:PushRepository` permissions at the time of each pull or push.
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "./clock.ts";
import { isAllowed, principalArn, type Principal } from "./ram/principal.ts";
import type { RegistryGrant } from "./registry/index.ts";

export const temporaryUsername = "cr_temp_user";

/** Where a credential is valid: one Enterprise instance, or every Personal registry of an account. */
export type CredentialScope =
  { kind: "enterprise"; account: string; instanceId: string; region: string } | { kind: "personal"; account: string; regions: readonly string[] };

export interface RegistryCredential {
  username: string;
  password: string;
  /** Epoch ms on the emulator clock. */
  expiresAt: number;
  principal: Principal;
  scope: CredentialScope;
}

/** The RAM resource of a repository, Enterprise (`repository/<instance>/<ns>/<name>`) or Personal (`repository/<ns>/<name>`). */
export function repositoryResources(scope: CredentialScope, repository: string): string[] {
  return scope.kind === "enterprise"
    ? [`acs:cr:${scope.region}:${scope.account}:repository/${scope.instanceId}/${repository}`]
    : scope.regions.map((region) => `acs:cr:${region}:${scope.account}:repository/${repository}`);
}

const repositoryActions = { pull: "cr:PullRepository", push: "cr:PushRepository" } as const;

export function grantFor(credential: RegistryCredential, now: () => number): RegistryGrant {
  return {
    subject: principalArn(credential.principal),
    expiresAt: credential.expiresAt,
    allows: (repository, action) =>
      now() < credential.expiresAt &&
      repositoryResources(credential.scope, repository).some((resource) => isAllowed(credential.principal, repositoryActions[action], resource)),
  };
}

export interface CredentialStore {
  issue(principal: Principal, scope: CredentialScope, expiresAt: number): RegistryCredential;
  /** The grant of a username/password pair, expired ones included so the realm can say "expired"; undefined for a wrong pair. */
  lookup(username: string, password: string): RegistryGrant | undefined;
}

export function createCredentialStore(clock: Clock): CredentialStore {
  const byPassword = new Map<string, RegistryCredential>();
  let issued = 0;
  return {
    issue(principal, scope, expiresAt) {
      // Expired passwords are kept a day so that using one is answered "expired", not "wrong password".
      if (++issued % 1000 === 0)
        for (const [password, credential] of byPassword) if (credential.expiresAt + 24 * 3600_000 < clock.now()) byPassword.delete(password);
      const credential: RegistryCredential = { username: temporaryUsername, password: randomBytes(36).toString("base64url"), expiresAt, principal, scope };
      byPassword.set(credential.password, credential);
      return credential;
    },
    lookup(username, password) {
      const credential = byPassword.get(password);
      if (credential === undefined || credential.username !== username) return undefined;
      return grantFor(credential, () => clock.now());
    },
  };
}
