/**
 * An API pattern names one API (`sts:AssumeRole`), every API of a product (`cr:`) or a prefix
 * ending in `*` (`cr:Get*`). Used by the request log's filters and by fault injection.
 */
export function matchesApi(pattern: string, api: string): boolean {
  if (pattern.endsWith("*")) return api.startsWith(pattern.slice(0, -1));
  if (pattern.endsWith(":")) return api.startsWith(pattern);
  return api === pattern;
}
