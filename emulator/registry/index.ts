/**
 * The emulator's container registry: a docker token-auth realm that turns the temporary
 * credentials of CR `GetAuthorizationToken` into registry tokens, and a real docker-registry that
 * trusts them.
 */
export type { RegistryGrant, RepositoryAction } from "./access.ts";
export type { RealmSigner } from "./signer.ts";
export type { RealmDecision, TokenRealmOptions } from "./realm.ts";
export type { DockerRegistryOptions, RunningDockerRegistry } from "./docker-registry.ts";
export type { ResourceAccess } from "./scope.ts";
export { createRealmSigner } from "./signer.ts";
export { createTokenRealm } from "./realm.ts";
export { dockerRegistryAvailable, startDockerRegistry } from "./docker-registry.ts";
