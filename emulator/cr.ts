/**
 * Container Registry: the 2018-12-01 RPC API for Enterprise instances and the 2016-06-07 `GET /tokens`
 * of the Personal Edition. Region-agnostic: instances are found by id wherever the client thinks it is.
 */
import { ApiError, openApiErrors } from "./api-error.ts";
import type { Clock } from "./clock.ts";
import type { Directory } from "./ram/directory.ts";
import { isAllowed, type Principal } from "./ram/principal.ts";
import type { CredentialStore } from "./registry-credentials.ts";
import type { Params } from "./sts.ts";
import { instanceEndpoints, type Account, type Instance } from "./world.ts";

const temporaryCredentialLifetimeMs = 3600_000;

const noPrivilege = (detail: string) => new ApiError(403, "NoPrivilege", `Access denied for this user: ${detail}.`);

export const instanceResource = (instance: Instance, account: Account) => `acs:cr:${instance.region}:${account.id}:instance/${instance.id}`;
/**
 * CR authorises `cr:GetAuthorizationToken` (and `cr:ListInstance`) on all of a region's resources,
 * `acs:cr:$regionid:$accountid:*`, never on one instance (docs/emulator.md cites the source).
 */
export const allResources = (region: string, account: string) => `acs:cr:${region}:${account}:*`;
/** The resource `GET /tokens` is authorised against: the emulator does not know the region asked; see docs/emulator.md. */
export const personalTokenResource = (account: string) => allResources("*", account);

/** The RAM identity behind a caller, as the world describes it (a role for a role session). */
const identityOf = (account: Account, caller: Principal) =>
  caller.kind === "user"
    ? account.users.find((user) => user.name === caller.userName)
    : account.roles.find((role) => role.name.toLowerCase() === caller.roleName.toLowerCase());

const success = { Code: "success", IsSuccess: true } as const;

export interface CrDeps {
  directory: Directory;
  credentials: CredentialStore;
  clock: Clock;
}

export function createCr(deps: CrDeps) {
  /**
   * The instance, if it is the caller's account's and the caller may do `action` on the resource
   * CR checks for it: the instance itself, or (`scope: "all"`) every resource of its region.
   */
  const authorisedInstance = (caller: Principal, params: Params, action: string, scope: "instance" | "all") => {
    const id = params["InstanceId"];
    if (id === undefined || id === "") throw openApiErrors.missingParameter("InstanceId");
    const found = deps.directory.instance(id);
    if (found === undefined || found.account.id !== caller.account) throw noPrivilege(`no instance ${id} in account ${caller.account}`);
    const resource = scope === "all" ? allResources(found.instance.region, found.account.id) : instanceResource(found.instance, found.account);
    if (!isAllowed(caller, action, resource)) throw noPrivilege(`${action} is not allowed on ${resource}`);
    return found;
  };

  /** One hour, or less when the caller's STS session ends sooner. */
  const credentialExpiry = (caller: Principal) => {
    const hour = deps.clock.now() + temporaryCredentialLifetimeMs;
    return caller.kind === "assumed-role" ? Math.min(hour, caller.expiresAt) : hour;
  };

  const summary = (instance: Instance) => ({
    InstanceId: instance.id,
    InstanceName: instance.name,
    InstanceSpecification: instance.specification,
    InstanceStatus: instance.status,
    ResourceGroupId: instance.resourceGroupId,
    InstanceIssue: "",
    Tags: [] as { TagKey: string; TagValue: string }[],
  });

  return {
    getAuthorizationToken(caller: Principal, params: Params) {
      const { account, instance } = authorisedInstance(caller, params, "cr:GetAuthorizationToken", "all");
      const credential = deps.credentials.issue(
        caller,
        { kind: "enterprise", account: account.id, instanceId: instance.id, region: instance.region },
        credentialExpiry(caller),
      );
      return { ...success, TempUsername: credential.username, AuthorizationToken: credential.password, ExpireTime: credential.expiresAt };
    },

    listInstanceEndpoint(caller: Principal, params: Params) {
      const { instance } = authorisedInstance(caller, params, "cr:ListInstanceEndpoint", "instance");
      const module = params["ModuleName"] ?? "Registry";
      const brief = params["Summary"] === "true";
      const endpoints = module !== "Registry" ? [] : instanceEndpoints(instance);
      return {
        ...success,
        Endpoints: endpoints.map((endpoint) => ({
          EndpointType: endpoint.type,
          Enable: endpoint.enable,
          Status: endpoint.enable ? "RUNNING" : "NOT_OPENED",
          AclEnable: false,
          Domains: endpoint.domains.map((domain) => ({ Domain: domain.domain, Type: domain.type })),
          ...(brief ? {} : { AclEntries: [], LinkedVpcs: [] }),
        })),
      };
    },

    getInstance(caller: Principal, params: Params) {
      const { instance } = authorisedInstance(caller, params, "cr:GetInstance", "instance");
      return { ...success, ...summary(instance), CreateTime: instance.createTime, ModifiedTime: instance.createTime };
    },

    listInstance(caller: Principal, params: Params) {
      const account = deps.directory.account(caller.account);
      const pageNo = Math.max(1, Number.parseInt(params["PageNo"] ?? "1", 10) || 1);
      const pageSize = Math.min(100, Math.max(1, Number.parseInt(params["PageSize"] ?? "30", 10) || 30));
      // Region-agnostic: an instance is listed when cr:ListInstance is allowed in its region.
      const visible = (account?.instances ?? []).filter((instance) => isAllowed(caller, "cr:ListInstance", allResources(instance.region, caller.account)));
      if (visible.length === 0 && !isAllowed(caller, "cr:ListInstance", allResources("*", caller.account)))
        throw noPrivilege(`cr:ListInstance is not allowed in account ${caller.account}`);
      const matching = visible.filter(
        (instance) =>
          (params["InstanceName"] === undefined || instance.name === params["InstanceName"]) &&
          (params["InstanceStatus"] === undefined || instance.status === params["InstanceStatus"]),
      );
      return {
        ...success,
        PageNo: pageNo,
        PageSize: pageSize,
        TotalCount: matching.length,
        Instances: matching.slice((pageNo - 1) * pageSize, pageNo * pageSize).map((instance) => ({
          ...summary(instance),
          RegionId: instance.region,
          CreateTime: String(instance.createTime),
          ModifiedTime: String(instance.createTime),
        })),
      };
    },

    /** Personal Edition `GET /tokens`: a credential for every Personal registry of the caller's account. */
    personalAuthorizationToken(caller: Principal) {
      const account = deps.directory.account(caller.account);
      if (account === undefined || account.personal.length === 0)
        throw new ApiError(404, "USER_NOT_EXIST", `Account ${caller.account} has no Personal Edition registry.`);
      if (!isAllowed(caller, "cr:GetAuthorizationToken", personalTokenResource(account.id)))
        throw noPrivilege(`cr:GetAuthorizationToken is not allowed on ${personalTokenResource(account.id)}`);
      // A RAM user (or role) that never set a registry password in the console is unknown to the Personal Edition.
      if (identityOf(account, caller)?.registryPasswordSet === false) throw new ApiError(404, "USER_NOT_EXIST", "user is not exist.");
      const credential = deps.credentials.issue(
        caller,
        { kind: "personal", account: account.id, regions: account.personal.map((personal) => personal.region) },
        credentialExpiry(caller),
      );
      return { data: { authorizationToken: credential.password, tempUserName: credential.username, expireDate: credential.expiresAt } };
    },
  };
}

export type Cr = ReturnType<typeof createCr>;
