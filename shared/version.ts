/**
 * The product's version, recorded once in package.json. `acr-credential --version`, the refresher
 * image's `--version` and the broker's `/healthz` report it; the chart's appVersion, the kustomize
 * image tag and CHANGELOG.md follow it (test/helm checks that they agree).
 */
import packageJson from "../package.json" with { type: "json" };

export const productVersion: string = packageJson.version;
