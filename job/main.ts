// Entry point of the bundled refresher (dist/job/refresher.mjs, the container's command): the same
// code as `acr-credential refresh` (and, as `<image> doctor`, `acr-credential doctor`), without the
// other commands and their dependencies.
import { AcrCredentialError, oneLine } from "../shared/errors.ts";
import { productVersion } from "../shared/version.ts";
import { command } from "../cli/commands/refresh.ts";

async function main(argv: string[]): Promise<number> {
  if (argv.length === 1 && argv[0] === "--version") {
    process.stdout.write(`${productVersion}\n`);
    return 0;
  }
  // `doctor` first: the same checks as `acr-credential doctor`, in the refresher's pod (its identity and token).
  const [name, selected, args] =
    argv[0] === "doctor" ? ["doctor", (await import("../cli/commands/doctor.ts")).command, argv.slice(1)] : ["refresh", command, argv];
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`${selected.usage}\n`);
    return 0;
  }
  try {
    return await selected.run(args);
  } catch (error) {
    if (error instanceof AcrCredentialError) {
      console.error(`acr-credential ${name}: ${oneLine(error)} [${error.code}]`);
      return error.exitCode;
    }
    console.error(`acr-credential ${name}: internal error: ${oneLine(error)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
