import type { Account, Instance, OidcProvider, Role, User, World } from "../world.ts";
import { parseOidcProviderArn, parseRoleArn } from "./arn.ts";
import type { PermissionPolicy } from "./policy.ts";

/** Lookups over a validated world, with policy references resolved to documents. */
export interface Directory {
  readonly world: World;
  account(id: string): Account | undefined;
  /** The user owning an access key id, and the key's secret. */
  accessKey(id: string): { account: Account; user: User; secret: string } | undefined;
  role(arn: string): { account: Account; role: Role } | undefined;
  oidcProvider(arn: string): { account: Account; provider: OidcProvider } | undefined;
  instance(id: string): { account: Account; instance: Instance } | undefined;
  policiesOf(account: Account, holder: User | Role): PermissionPolicy[];
}

export function createDirectory(world: World): Directory {
  const accounts = new Map(world.accounts.map((account) => [account.id, account]));
  const keys = new Map<string, { account: Account; user: User; secret: string }>();
  const instances = new Map<string, { account: Account; instance: Instance }>();
  for (const account of world.accounts) {
    for (const user of account.users) for (const key of user.accessKeys) keys.set(key.id, { account, user, secret: key.secret });
    for (const instance of account.instances) instances.set(instance.id, { account, instance });
  }
  return {
    world,
    account: (id) => accounts.get(id),
    accessKey: (id) => keys.get(id),
    role(arn) {
      const parsed = parseRoleArn(arn);
      const account = parsed === undefined ? undefined : accounts.get(parsed.account);
      const role = account?.roles.find((candidate) => candidate.name.toLowerCase() === parsed?.role);
      return account === undefined || role === undefined ? undefined : { account, role };
    },
    oidcProvider(arn) {
      const parsed = parseOidcProviderArn(arn);
      const account = parsed === undefined ? undefined : accounts.get(parsed.account);
      const provider = account?.oidcProviders.find((candidate) => candidate.name.toLowerCase() === parsed?.provider);
      return account === undefined || provider === undefined ? undefined : { account, provider };
    },
    instance: (id) => instances.get(id),
    policiesOf: (account, holder) => holder.policies.map((ref) => (typeof ref === "string" ? (account.policies[ref] as PermissionPolicy) : ref)),
  };
}
