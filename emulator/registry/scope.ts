/**
 * The `scope` parameter of docker's token protocol: `type:name:actions`, e.g.
 * `repository:demo/hello:pull,push`. Clients may repeat the parameter (one per resource) and some
 * put several space-separated scopes in one value (the OAuth2 form), so both are accepted.
 */

/** What a client asks for on one resource; also the shape of one `access` entry in a token. */
export interface ResourceAccess {
  type: string;
  name: string;
  actions: string[];
}

// docker/distribution's reference grammar for a repository path: lowercase components joined by
// `/`, each made of alphanumerics with single `.`/`_`, double `_` or runs of `-` between them.
const pathComponent = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const repositoryNamePattern = new RegExp(`^${pathComponent}(?:/${pathComponent})*$`);
const maxRepositoryNameLength = 255;
const resourceTypePattern = /^[a-z0-9]+(?:\([a-z0-9]+\))?$/;

export function isRepositoryName(name: string): boolean {
  return name.length <= maxRepositoryNameLength && repositoryNamePattern.test(name);
}

/** One scope string, or undefined when it is malformed (distribution ignores those, so do we). */
export function parseScope(scope: string): ResourceAccess | undefined {
  // Split at the first and the last colon rather than on every colon: the type and the action list
  // never contain one, and this keeps a malformed name whole so it is rejected, not misread.
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first <= 0 || last === first) return undefined;
  const type = scope.slice(0, first);
  const name = scope.slice(first + 1, last);
  const actions = [
    ...new Set(
      scope
        .slice(last + 1)
        .split(",")
        .filter((action) => action !== ""),
    ),
  ];
  if (!resourceTypePattern.test(type) || name === "" || actions.length === 0) return undefined;
  if (type === "repository" && !isRepositoryName(name)) return undefined;
  if (/\s/.test(name) || actions.some((action) => /\s/.test(action))) return undefined;
  return { type, name, actions };
}

/**
 * Every `scope` value of a token request, merged per resource in the order first asked for:
 * `repository:a:pull` and `repository:a:push` become one entry with both actions.
 */
export function parseScopes(values: readonly string[]): ResourceAccess[] {
  const merged = new Map<string, ResourceAccess>();
  for (const value of values) {
    for (const scope of value.split(" ")) {
      const access = parseScope(scope);
      if (access === undefined) continue;
      const key = `${access.type}:${access.name}`;
      const known = merged.get(key);
      if (known === undefined) merged.set(key, access);
      else known.actions = [...new Set([...known.actions, ...access.actions])];
    }
  }
  return [...merged.values()];
}

export function formatScope(access: ResourceAccess): string {
  return `${access.type}:${access.name}:${access.actions.join(",")}`;
}
