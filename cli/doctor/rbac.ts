/**
 * What the refresher's RBAC must allow, read from the manifests it ships (job/deploy/base/rbac.yaml),
 * and which of it a SelfSubjectRulesReview's rules do not cover. Pure: the manifests and the review's
 * rules come in as data.
 */
import { parseAllDocuments } from "yaml";

/** One verb on one resource (and name), cluster-wide or in one namespace. */
export interface Permission {
  /** `undefined`: granted by a ClusterRole, so needed in every namespace the refresher serves. */
  namespace: string | undefined;
  apiGroup: string;
  resource: string;
  resourceName?: string;
  verb: string;
}

/** A rule as RBAC objects and SelfSubjectRulesReview's `resourceRules` spell it. */
export interface ResourceRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

interface RbacObject {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  rules?: ResourceRule[];
}

/** Every permission the ClusterRoles and Roles of a manifest grant, one verb, resource and name each. */
export function requiredPermissions(manifests: string): Permission[] {
  const permissions: Permission[] = [];
  for (const document of parseAllDocuments(manifests)) {
    const object = document.toJS() as RbacObject | null;
    if (object === null || (object.kind !== "ClusterRole" && object.kind !== "Role")) continue;
    const namespace = object.kind === "Role" ? (object.metadata?.namespace ?? "default") : undefined;
    for (const rule of object.rules ?? []) {
      for (const apiGroup of rule.apiGroups ?? [""]) {
        for (const resource of rule.resources ?? []) {
          for (const verb of rule.verbs) {
            const names = rule.resourceNames ?? [];
            if (names.length === 0) permissions.push({ namespace, apiGroup, resource, verb });
            for (const resourceName of names) permissions.push({ namespace, apiGroup, resource, resourceName, verb });
          }
        }
      }
    }
  }
  return permissions;
}

const covers = (values: readonly string[] | undefined, value: string) => (values ?? []).some((candidate) => candidate === "*" || candidate === value);

/** Whether the review's rules allow the permission (wildcards included; a rule limited to names covers only those names). */
export function allowed(permission: Permission, rules: readonly ResourceRule[]): boolean {
  return rules.some((rule) => {
    if (!covers(rule.apiGroups, permission.apiGroup) || !covers(rule.resources, permission.resource) || !covers(rule.verbs, permission.verb)) return false;
    const names = rule.resourceNames ?? [];
    if (names.length === 0) return true;
    return permission.resourceName !== undefined && names.includes(permission.resourceName);
  });
}

/** "patch configmaps/acr-credential-status in kube-system", as a person would grant it. */
export function describePermission(permission: Permission, namespace: string): string {
  const resource = permission.apiGroup === "" ? permission.resource : `${permission.resource}.${permission.apiGroup}`;
  return `${permission.verb} ${resource}${permission.resourceName === undefined ? "" : `/${permission.resourceName}`} in ${namespace}`;
}

/**
 * The permissions missing in each reviewed namespace: a Role's in its own namespace, a ClusterRole's
 * in every namespace reviewed.
 */
export function missingPermissions(required: readonly Permission[], reviews: ReadonlyMap<string, readonly ResourceRule[]>): string[] {
  const missing: string[] = [];
  for (const [namespace, rules] of reviews) {
    for (const permission of required) {
      if (permission.namespace !== undefined && permission.namespace !== namespace) continue;
      if (!allowed(permission, rules)) missing.push(describePermission(permission, namespace));
    }
  }
  return [...new Set(missing)];
}
