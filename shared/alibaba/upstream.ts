/**
 * The SDK clients of STS, Container Registry and ACK, as one module that `cloud.ts` loads on the first
 * upstream call. The built-in-runtime bundle ships it as a file of its own (build.mjs), so a cold
 * start does not even compile the SDKs.
 */
export { assumeRole, assumeRoleWithOidc } from "./sts.ts";
export { getAuthorizationToken, getPersonalAuthorizationToken, listInstanceDomains } from "./cr.ts";
export { describeClusterDetail } from "./ack.ts";
