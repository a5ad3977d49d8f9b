/**
 * The two programs that render job/deploy: `helm`, built by test/helm/build.sh at the version pinned
 * in test/helm/go.mod, and `kubectl kustomize`, from the Kubernetes test binaries (test/kube/build.sh
 * --with-kubectl). Each command runs with Helm's folders in a temporary directory, so nothing of the
 * machine's own Helm configuration (repositories, plugins, registries) takes part.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { builtBinaryDir, isExecutableFile, pinnedVersions } from "../kube/binaries.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
export const chartDir = join(repoRoot, "job/deploy/helm/acr-credential-refresher");
export const deployDir = join(repoRoot, "job/deploy");

/** The helm version test/helm/go.mod pins. */
export function pinnedHelmVersion(goMod = readFileSync(join(repoRoot, "test/helm/go.mod"), "utf8")): string {
  const match = /^\s*helm\.sh\/helm\/v4\s+(v\S+)/m.exec(goMod);
  if (!match?.[1]) throw new Error("test/helm/go.mod does not require helm.sh/helm/v4; see test/helm/build.sh --help");
  return match[1];
}

export type ToolLookup = { found: true; helm: string; kubectl: string } | { found: false; reason: string };

/** `HELM_BINARY` / `KUBECTL_BINARY`, else the folders the build scripts fill. */
export function findTools(env: Readonly<Record<string, string | undefined>> = process.env): ToolLookup {
  const helm = env["HELM_BINARY"] || join(repoRoot, ".cache/helm", pinnedHelmVersion(), "bin/helm");
  const kubectl = env["KUBECTL_BINARY"] || join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl");
  if (!isExecutableFile(helm)) return { found: false, reason: `no helm at ${helm}: run \`bash test/helm/build.sh\` (needs Go 1.26) or set HELM_BINARY` };
  if (!isExecutableFile(kubectl))
    return { found: false, reason: `no kubectl at ${kubectl}: run \`bash test/kube/build.sh --with-kubectl\` or set KUBECTL_BINARY` };
  return { found: true, helm, kubectl };
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(program: string, args: string[], env: Record<string, string>): Promise<Result> {
  return new Promise((resolve) => {
    execFile(program, args, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs helm with its cache, configuration and data folders in a fresh temporary directory. */
export async function helm(tools: { helm: string }, args: string[], env: Record<string, string> = {}): Promise<Result> {
  const home = await mkdtemp(join(tmpdir(), "helm-home-"));
  try {
    return await exec(tools.helm, args, {
      HOME: home,
      HELM_CACHE_HOME: join(home, "cache"),
      HELM_CONFIG_HOME: join(home, "config"),
      HELM_DATA_HOME: join(home, "data"),
      ...env,
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

export async function kustomize(tools: { kubectl: string }, dir: string): Promise<Result> {
  // The test overlays live in temporary folders and point back into job/deploy.
  return exec(tools.kubectl, ["kustomize", "--load-restrictor", "LoadRestrictionsNone", dir], {});
}

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

/** The objects of a multi-document YAML stream, without empty documents. */
export function objects(yaml: string): Manifest[] {
  return parseAllDocuments(yaml)
    .map((document) => document.toJS() as Manifest | null)
    .filter((object): object is Manifest => object !== null);
}

export const keyOf = (object: Manifest): string => `${object.kind}/${object.metadata.namespace ?? ""}/${object.metadata.name}`;
