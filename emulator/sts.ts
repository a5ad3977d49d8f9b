/** STS 2015-04-01: AssumeRole, AssumeRoleWithOIDC and GetCallerIdentity over the world's RAM. */
import { sessionSeconds } from "../shared/alibaba/names.ts";
import { ApiError, openApiErrors } from "./api-error.ts";
import type { Clock } from "./clock.ts";
import type { OidcVerifier } from "./oidc.ts";
import { assumedRoleArn, assumedRoleUserArn, roleArn as formatRoleArn, parseRoleArn, userArn } from "./ram/arn.ts";
import type { Directory } from "./ram/directory.ts";
import { permissionPolicySchema, type PermissionPolicy } from "./ram/policy.ts";
import { isAllowed, trustIdentity, type Principal } from "./ram/principal.ts";
import { roleId, type SessionStore, type StsSession } from "./ram/sessions.ts";
import { trustAllows, type TrustCaller } from "./ram/trust.ts";
import type { Account, Role } from "./world.ts";

export type Params = Readonly<Record<string, string | undefined>>;

const stsErrors = {
  duration: (max: number) => new ApiError(400, "InvalidParameter.DurationSeconds", `The Min/Max value of DurationSeconds is 15min/${max / 3600}hr.`),
  roleSessionName: () =>
    new ApiError(400, "InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly formed: 2-64 letters, digits, '.', '@', '-' or '_'."),
  roleArn: () => new ApiError(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed: acs:ram::<account id>:role/<role name>."),
  externalId: () => new ApiError(400, "InvalidParameter.ExternalId", "The parameter ExternalId is wrongly formed."),
  policyGrammar: (detail: string) => new ApiError(400, "InvalidParameter.PolicyGrammar", `The parameter Policy has not passed grammar check: ${detail}.`),
  policySize: () => new ApiError(400, "InvalidParameter.PolicySize", "The size of Policy must be smaller than 2048 bytes."),
  roleNotFound: (arn: string) => new ApiError(404, "EntityNotExist.Role", `The role not exists: ${arn}.`),
  noPermission: () => new ApiError(403, "NoPermission", "You are not authorized to do this action. You should be authorized by RAM."),
  // Every AuthenticationFail.* of AssumeRoleWithOIDC is an authentication failure: HTTP 401.
  oidcNoProvider: () => new ApiError(401, "AuthenticationFail.NoPermission", "No such OIDC Provider registered."),
  oidcNoPermission: () =>
    new ApiError(401, "AuthenticationFail.NoPermission", "There is no permission: the role's trust policy does not admit this OIDC token."),
  oidcTokenSize: () => new ApiError(400, "InvalidParameter.OIDCToken", "The parameter OIDCToken must be 4 to 20000 characters."),
};

function required(params: Params, name: string): string {
  const value = params[name];
  if (value === undefined || value === "") throw openApiErrors.missingParameter(name);
  return value;
}

function sessionName(params: Params): string {
  const name = required(params, "RoleSessionName");
  if (!/^[A-Za-z0-9.@_-]{2,64}$/.test(name)) throw stsErrors.roleSessionName();
  return name;
}

function requestedDuration(params: Params): number | undefined {
  const raw = params["DurationSeconds"];
  if (raw === undefined || raw === "") return undefined;
  if (!/^\d{1,6}$/.test(raw)) throw stsErrors.duration(3600);
  return Number(raw);
}

function sessionPolicy(params: Params): PermissionPolicy | undefined {
  const raw = params["Policy"];
  if (raw === undefined || raw === "") return undefined;
  if (Buffer.byteLength(raw) > 2048) throw stsErrors.policySize();
  let document: unknown;
  try {
    document = JSON.parse(raw);
  } catch {
    throw stsErrors.policyGrammar("not JSON");
  }
  const parsed = permissionPolicySchema.safeParse(document);
  if (!parsed.success) throw stsErrors.policyGrammar(parsed.error.issues[0]?.message ?? "invalid");
  return parsed.data;
}

/** STS `Expiration`: UTC at second precision. */
export function formatExpiration(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface StsDeps {
  directory: Directory;
  sessions: SessionStore;
  clock: Clock;
  oidc: OidcVerifier;
  /** The world's `sts.roleChainingMaxDuration`: the longest session a role session may obtain with AssumeRole. */
  roleChainingMaxDuration?: number;
}

export interface AssumeRoleResult {
  AssumedRoleUser: { AssumedRoleId: string; Arn: string };
  Credentials: { SecurityToken: string; Expiration: string; AccessKeySecret: string; AccessKeyId: string };
}

export function createSts(deps: StsDeps) {
  const findRole = (arn: string) => {
    if (parseRoleArn(arn) === undefined) throw stsErrors.roleArn();
    const found = deps.directory.role(arn);
    if (found === undefined) throw stsErrors.roleNotFound(arn);
    return found;
  };

  const durationFor = (role: Role, requested: number | undefined) => {
    const duration = requested ?? 3600;
    if (duration < sessionSeconds.min || duration > role.maxSessionDuration) throw stsErrors.duration(role.maxSessionDuration);
    return duration;
  };

  const issue = (account: Account, role: Role, name: string, durationSeconds: number, policy: PermissionPolicy | undefined): StsSession => {
    // Whole seconds, so the Expiration string a client parses is exactly when the session ends.
    const expiresAt = Math.floor((deps.clock.now() + durationSeconds * 1000) / 1000) * 1000;
    return deps.sessions.issue({
      account: account.id,
      roleName: role.name,
      sessionName: name,
      policies: deps.directory.policiesOf(account, role),
      ...(policy === undefined ? {} : { sessionPolicy: policy }),
      expiresAt,
    });
  };

  const result = (account: Account, role: Role, session: StsSession): AssumeRoleResult => ({
    AssumedRoleUser: {
      AssumedRoleId: `${roleId(account.id, role.name)}:${session.principal.sessionName}`,
      Arn: assumedRoleUserArn(account.id, role.name, session.principal.sessionName),
    },
    Credentials: {
      SecurityToken: session.securityToken,
      Expiration: formatExpiration(session.principal.expiresAt),
      AccessKeySecret: session.accessKeySecret,
      AccessKeyId: session.accessKeyId,
    },
  });

  return {
    /** AssumeRole for a user or a role session (role chaining, cross-account). */
    assumeRole(caller: Principal, params: Params): AssumeRoleResult {
      const arn = required(params, "RoleArn");
      const name = sessionName(params);
      const requested = requestedDuration(params);
      const policy = sessionPolicy(params);
      const externalId = params["ExternalId"];
      if (externalId !== undefined && externalId !== "" && !/^[\w+=,.@:/-]{2,1224}$/.test(externalId)) throw stsErrors.externalId();
      const { account, role } = findRole(arn);
      const duration = durationFor(role, requested);
      // Whether STS caps chained sessions is not documented; a world can make it so (docs/emulator.md).
      const chainCap = deps.roleChainingMaxDuration;
      if (caller.kind === "assumed-role" && chainCap !== undefined && duration > chainCap) throw stsErrors.duration(chainCap);
      const canonicalArn = formatRoleArn(account.id, role.name);
      if (!isAllowed(caller, "sts:AssumeRole", canonicalArn)) throw stsErrors.noPermission();
      const trustCaller: TrustCaller = { kind: "ram", account: caller.account, identity: trustIdentity(caller) };
      const context = externalId === undefined || externalId === "" ? {} : { "sts:externalid": externalId };
      if (!trustAllows(role.trustPolicy, trustCaller, context)) throw stsErrors.noPermission();
      return result(account, role, issue(account, role, name, duration, policy));
    },

    /** AssumeRoleWithOIDC: anonymous; the token is the proof, checked against the provider and the trust conditions. */
    async assumeRoleWithOidc(params: Params) {
      const providerArn = required(params, "OIDCProviderArn");
      const token = required(params, "OIDCToken");
      const arn = required(params, "RoleArn");
      const name = sessionName(params);
      const requested = requestedDuration(params);
      const policy = sessionPolicy(params);
      if (token.length < 4 || token.length > 20_000) throw stsErrors.oidcTokenSize();
      const provider = deps.directory.oidcProvider(providerArn);
      if (provider === undefined) throw stsErrors.oidcNoProvider();
      const { account, role } = findRole(arn);
      const duration = durationFor(role, requested);
      const info = await deps.oidc.verify(provider.provider, token);
      if (provider.account.id !== account.id) throw stsErrors.oidcNoPermission();
      const context = { "oidc:iss": info.issuer, "oidc:aud": info.audiences, "oidc:sub": info.subject };
      if (!trustAllows(role.trustPolicy, { kind: "federated", providerArn }, context)) throw stsErrors.oidcNoPermission();
      const session = issue(account, role, name, duration, policy);
      const seconds = (value: number | undefined) => (value === undefined ? "" : formatExpiration(value * 1000));
      return {
        ...result(account, role, session),
        OIDCTokenInfo: {
          Subject: info.subject,
          Issuer: info.issuer,
          ClientIds: info.audiences.join(","),
          ExpirationTime: seconds(info.expiresAt),
          IssuanceTime: seconds(info.issuedAt),
          VerificationInfo: "Success",
        },
      };
    },

    getCallerIdentity(caller: Principal) {
      if (caller.kind === "user") {
        const id = roleId(caller.account, `user:${caller.userName}`);
        return { AccountId: caller.account, UserId: id, PrincipalId: id, Arn: userArn(caller.account, caller.userName), IdentityType: "RAMUser" };
      }
      const id = roleId(caller.account, caller.roleName);
      return {
        AccountId: caller.account,
        RoleId: id,
        UserId: `${id}:${caller.sessionName}`,
        PrincipalId: `${id}:${caller.sessionName}`,
        Arn: assumedRoleArn(caller.account, caller.roleName, caller.sessionName),
        IdentityType: "AssumedRoleUser",
      };
    },

    /** Credentials a cloud service (Function Compute) holds for a role that trusts it, e.g. a function's execution role. */
    assumeRoleForService(arn: string, service: string, session: string, durationSeconds = 3600): StsSession {
      const { account, role } = findRole(arn);
      if (!trustAllows(role.trustPolicy, { kind: "service", service, account: account.id })) throw stsErrors.noPermission();
      return issue(account, role, session, Math.min(durationSeconds, role.maxSessionDuration), undefined);
    },
  };
}

export type Sts = ReturnType<typeof createSts>;
