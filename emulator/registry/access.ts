import type { ResourceAccess } from "./scope.ts";

export type RepositoryAction = "pull" | "push";

/** What one registry credential may do, as the emulator's CR API issued it. */
export interface RegistryGrant {
  /** Who the credential was issued to (an ARN), for logs. */
  subject: string;
  /** Epoch milliseconds, compared with the realm's `now()`. */
  expiresAt: number;
  /** `repository` is a path such as `demo/hello`. */
  allows(repository: string, action: RepositoryAction): boolean;
}

const repositoryActions: ReadonlySet<string> = new Set<RepositoryAction>(["pull", "push"]);

function isRepositoryAction(action: string): action is RepositoryAction {
  return repositoryActions.has(action);
}

/**
 * The intersection of what was asked for on one resource and what the grant allows. A resource the
 * grant does not cover keeps its entry with no actions, as real token servers answer: the registry
 * then refuses the request itself. Only repository pull and push can ever be granted; `*`,
 * `delete` and other resource types (`registry:catalog:*`) never are.
 */
export function grantResourceAccess(requested: ResourceAccess, grant: RegistryGrant): ResourceAccess {
  const { type, name, actions } = requested;
  return { type, name, actions: type === "repository" ? actions.filter((action) => isRepositoryAction(action) && grant.allows(name, action)) : [] };
}

/** `grantResourceAccess` for every requested resource, in the order asked. */
export function grantAccess(requested: readonly ResourceAccess[], grant: RegistryGrant): ResourceAccess[] {
  return requested.map((resource) => grantResourceAccess(resource, grant));
}

/** `denied`, or `granted:` and the actions given, for the decision log. */
export function accessOutcome(granted: ResourceAccess): string {
  return granted.actions.length === 0 ? "denied" : `granted:${granted.actions.join(",")}`;
}
