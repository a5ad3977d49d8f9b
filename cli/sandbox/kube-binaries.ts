/**
 * Where kube-apiserver and etcd come from (envtest's order: TEST_ASSET_*, KUBEBUILDER_ASSETS, then
 * the folder test/kube/build.sh fills for the version pinned in test/kube/go.mod).
 */
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the test control plane's programs come from, in envtest's order of precedence. */
export type BinarySource = "TEST_ASSET" | "KUBEBUILDER_ASSETS" | "built";

export interface KubeBinaries {
  kubeApiserver: string;
  etcd: string;
  source: Readonly<Record<"kubeApiserver" | "etcd", BinarySource>>;
}

export type BinaryLookup = { found: true; binaries: KubeBinaries } | { found: false; reason: string };

export interface PinnedVersions {
  kubernetes: string;
  etcd: string;
}

const kubeDir = fileURLToPath(new URL("../../test/kube/", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export const buildCommand = "bash test/kube/build.sh";

/** The Kubernetes and etcd versions pinned in test/kube/go.mod, the one place they are recorded. */
export function pinnedVersions(goMod: string = readFileSync(join(kubeDir, "go.mod"), "utf8")): PinnedVersions {
  const version = (module: string): string => {
    const escaped = module.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    const match = new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m").exec(goMod);
    if (!match?.[1]) throw new Error(`test/kube/go.mod does not require ${module}; rerun test/kube/pin.sh`);
    return match[1];
  };
  return { kubernetes: version("k8s.io/kubernetes"), etcd: version("go.etcd.io/etcd/server/v3") };
}

/** The folder build.sh writes to for a Kubernetes version: `.cache/kube/<version>/bin` at the repository root. */
export function builtBinaryDir(kubernetesVersion: string, root: string = repoRoot): string {
  return join(root, ".cache", "kube", kubernetesVersion, "bin");
}

export function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Finds kube-apiserver and etcd the way controller-runtime's envtest does, per program:
 * `TEST_ASSET_KUBE_APISERVER` / `TEST_ASSET_ETCD`, then `$KUBEBUILDER_ASSETS/<name>`, then the
 * folder build.sh fills. A `TEST_ASSET_*` that names no executable is a mistake, not a fallthrough.
 */
export function findKubeBinaries(
  env: Readonly<Record<string, string | undefined>>,
  builtDir: string,
  isExecutable: (path: string) => boolean = isExecutableFile,
): BinaryLookup {
  const found: Partial<Record<"kubeApiserver" | "etcd", { path: string; source: BinarySource }>> = {};
  const programs = [
    { key: "kubeApiserver", name: "kube-apiserver", variable: "TEST_ASSET_KUBE_APISERVER" },
    { key: "etcd", name: "etcd", variable: "TEST_ASSET_ETCD" },
  ] as const;

  for (const { key, name, variable } of programs) {
    const explicit = env[variable];
    if (explicit) {
      if (!isExecutable(explicit)) {
        return { found: false, reason: `${variable}=${explicit} is not an executable file; fix it or unset it` };
      }
      found[key] = { path: explicit, source: "TEST_ASSET" };
      continue;
    }
    const assets = env["KUBEBUILDER_ASSETS"];
    if (assets && isExecutable(join(assets, name))) {
      found[key] = { path: join(assets, name), source: "KUBEBUILDER_ASSETS" };
      continue;
    }
    if (isExecutable(join(builtDir, name))) {
      found[key] = { path: join(builtDir, name), source: "built" };
    }
  }

  const { kubeApiserver, etcd } = found;
  if (!kubeApiserver || !etcd) {
    const missing = [kubeApiserver ? undefined : "kube-apiserver", etcd ? undefined : "etcd"].filter(Boolean).join(" and ");
    return {
      found: false,
      reason: `${missing} not found: run \`${buildCommand}\` (needs Go 1.26) or set KUBEBUILDER_ASSETS`,
    };
  }
  return {
    found: true,
    binaries: {
      kubeApiserver: kubeApiserver.path,
      etcd: etcd.path,
      source: { kubeApiserver: kubeApiserver.source, etcd: etcd.source },
    },
  };
}

/** The lookup for this process: its environment and the build folder of the pinned version. */
export function findPinnedKubeBinaries(env: Readonly<Record<string, string | undefined>> = process.env): BinaryLookup {
  return findKubeBinaries(env, builtBinaryDir(pinnedVersions().kubernetes));
}
