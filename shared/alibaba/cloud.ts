import { getAuthorizationToken, getPersonalAuthorizationToken, listInstanceDomains, type RegistryPassword } from "./cr.ts";
import type { CallOptions, Endpoints, Identity, StsSession } from "./identity.ts";
import { assumeRole, assumeRoleWithOidc, type AssumeRoleInput, type AssumeRoleWithOidcInput } from "./sts.ts";

/**
 * The Alibaba Cloud calls the broker makes, bound to one set of endpoints. This is the seam the
 * broker's logic is written against; tests point the endpoints at the emulator.
 */
export interface AlibabaCloud {
  assumeRole(identity: Identity, input: AssumeRoleInput, call: CallOptions): Promise<StsSession>;
  assumeRoleWithOidc(input: AssumeRoleWithOidcInput, call: CallOptions): Promise<StsSession>;
  getAuthorizationToken(identity: Identity, target: { instanceId: string; regionId: string }, call: CallOptions): Promise<RegistryPassword>;
  listInstanceDomains(identity: Identity, target: { instanceId: string; regionId: string }, call: CallOptions): Promise<string[]>;
  getPersonalAuthorizationToken(identity: Identity, target: { regionId: string }, call: CallOptions): Promise<RegistryPassword>;
}

export function createAlibabaCloud(endpoints: Endpoints): AlibabaCloud {
  return {
    assumeRole: (identity, input, call) => assumeRole(endpoints, identity, input, call),
    assumeRoleWithOidc: (input, call) => assumeRoleWithOidc(endpoints, input, call),
    getAuthorizationToken: (identity, target, call) => getAuthorizationToken(endpoints, identity, target, call),
    listInstanceDomains: (identity, target, call) => listInstanceDomains(endpoints, identity, target, call),
    getPersonalAuthorizationToken: (identity, target, call) => getPersonalAuthorizationToken(endpoints, identity, target, call),
  };
}

export type { RegistryPassword };
