// Entry point of the bundled refresher (dist/job/refresher.mjs, the container's command): the same
// code as `acr-credential refresh`, without the other commands and their dependencies.
import { AcrCredentialError, oneLine } from "../shared/errors.ts";
import { productVersion } from "../shared/version.ts";
import { command } from "../cli/commands/refresh.ts";

async function main(argv: string[]): Promise<number> {
  if (argv.length === 1 && argv[0] === "--version") {
    process.stdout.write(`${productVersion}\n`);
    return 0;
  }
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(argv);
  } catch (error) {
    if (error instanceof AcrCredentialError) {
      console.error(`acr-credential refresh: ${oneLine(error)} [${error.code}]`);
      return error.exitCode;
    }
    console.error(`acr-credential refresh: internal error: ${oneLine(error)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
