import type { RegistryPassword } from "./cr.ts";
import type { CallOptions, Endpoints, Identity, StsSession } from "./identity.ts";
import type { AssumeRoleInput, AssumeRoleWithOidcInput } from "./sts.ts";
import type * as Upstream from "./upstream.ts";

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

// The SDKs are loaded on the first upstream call, not when the broker starts: a Function Compute
// instance whose requests are all answered from its caches (or refused) never pays for them.
let upstream: Promise<typeof Upstream> | undefined;
const load = () => (upstream ??= import("./upstream.ts"));

export function createAlibabaCloud(endpoints: Endpoints): AlibabaCloud {
  return {
    assumeRole: async (identity, input, call) => (await load()).assumeRole(endpoints, identity, input, call),
    assumeRoleWithOidc: async (input, call) => (await load()).assumeRoleWithOidc(endpoints, input, call),
    getAuthorizationToken: async (identity, target, call) => (await load()).getAuthorizationToken(endpoints, identity, target, call),
    listInstanceDomains: async (identity, target, call) => (await load()).listInstanceDomains(endpoints, identity, target, call),
    getPersonalAuthorizationToken: async (identity, target, call) => (await load()).getPersonalAuthorizationToken(endpoints, identity, target, call),
  };
}

export type { RegistryPassword };
