// `npm run testenv [-- --ec]`: the tests' control plane, kept running for kubectl and manual checks
// until Ctrl-C. `--ec` signs ServiceAccount tokens with ECDSA P-256 (ES256) instead of RSA (RS256).
import { findPinnedKubeBinaries, pinnedVersions } from "./binaries.ts";
import { startControlPlane, type ControlPlane } from "./control-plane.ts";

const args = process.argv.slice(2);
const unknown = args.filter((arg) => arg !== "--ec");
if (unknown.length > 0) {
  console.error(`testenv: unknown option ${unknown.join(" ")}; the only option is --ec`);
  process.exit(2);
}

const lookup = findPinnedKubeBinaries();
if (!lookup.found) {
  console.error(`testenv: ${lookup.reason}`);
  process.exit(1);
}

let plane: ControlPlane;
try {
  plane = await startControlPlane({ binaries: lookup.binaries, signingKey: args.includes("--ec") ? "ec" : "rsa" });
} catch (error) {
  console.error(`testenv: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}

const built = lookup.binaries.source.kubeApiserver === "built" ? ` ${pinnedVersions().kubernetes}` : "";
console.log(`Kubernetes${built} control plane ready in ${plane.startedInMs} ms (tokens signed ${plane.signingAlgorithm})
export KUBECONFIG=${plane.kubeconfigFile}
apiserver:  ${plane.apiserverUrl}
issuer:     ${plane.issuer}  (discovery: ${plane.issuer}/.well-known/openid-configuration)
CA file:    ${plane.caFile}
logs, data: ${plane.dataDir}
Ctrl-C stops it and removes ${plane.dataDir}`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log("stopping…");
    void plane.stop().then(() => process.exit(0));
  });
}
// Keeps the process alive; the signal handlers above end it.
setInterval(() => {}, 1 << 30);
