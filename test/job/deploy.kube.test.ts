/**
 * The shipped kustomizations as a cluster admin applies them: `kubectl apply -k` of the base on the
 * real API server (the admission policy is cluster-scoped although kustomize gives it the base's
 * namespace), and the pre-1.30 overlay, which must be the base without exactly the policy.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { AdmissionregistrationV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { builtBinaryDir, isExecutableFile, pinnedVersions } from "../kube/binaries.ts";
import { adminConfig, kubeAvailable, kubeEnv } from "../kube/cluster.ts";
import { acquireRefresherLock } from "./kube-lock.ts";

const kubectl = join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl");
const deploy = (folder: string) => new URL(`../../job/deploy/${folder}`, import.meta.url).pathname;
const run = promisify(execFile);

async function rendered(folder: string): Promise<Array<{ kind: string; metadata: { name: string } }>> {
  const { stdout } = await run(kubectl, ["kustomize", deploy(folder)]);
  return parseAllDocuments(stdout).map((document) => document.toJS() as { kind: string; metadata: { name: string } });
}

// kubectl is built by `bash test/kube/build.sh --with-kubectl` (as .ci/run does).
describe.skipIf(!kubeAvailable() || !isExecutableFile(kubectl))("job/deploy with kubectl", () => {
  // Re-applying the refresher's RBAC and policy must not happen while another file relies on them.
  let release: () => Promise<void>;
  beforeAll(async () => {
    release = await acquireRefresherLock("deploy.kube.test");
  });
  afterAll(async () => {
    await release?.();
  });

  it("installs the base with kubectl apply -k, admission policy included", async () => {
    const dir = await mkdtemp(join(tmpdir(), "deploy-"));
    try {
      const kubeconfig = join(dir, "kubeconfig");
      await writeFile(kubeconfig, kubeEnv().kubeconfig);
      const { stdout } = await run(kubectl, ["--kubeconfig", kubeconfig, "apply", "-k", deploy("base")]);
      expect(stdout).toMatch(/validatingadmissionpolicy\.admissionregistration\.k8s\.io\/acr-credential-refresher-own-secrets (created|configured|unchanged)/);
      expect(stdout).toMatch(
        /validatingadmissionpolicybinding\.admissionregistration\.k8s\.io\/acr-credential-refresher-own-secrets (created|configured|unchanged)/,
      );
      const policy = await adminConfig()
        .makeApiClient(AdmissionregistrationV1Api)
        .readValidatingAdmissionPolicy({ name: "acr-credential-refresher-own-secrets" });
      expect(policy.spec?.validations).toHaveLength(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("leaves exactly the admission policy and its binding out for clusters older than 1.30", async () => {
    const key = (object: { kind: string; metadata: { name: string } }) => `${object.kind}/${object.metadata.name}`;
    const base = (await rendered("base")).map(key);
    const old = (await rendered("pre-1.30")).map(key);
    expect(base.filter((object) => !old.includes(object)).sort()).toEqual([
      "ValidatingAdmissionPolicy/acr-credential-refresher-own-secrets",
      "ValidatingAdmissionPolicyBinding/acr-credential-refresher-own-secrets",
    ]);
    expect(old.filter((object) => !base.includes(object))).toEqual([]);
  });
});
