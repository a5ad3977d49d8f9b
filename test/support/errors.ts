import { AcrCredentialError } from "../../shared/errors.ts";

/** The AcrCredentialError `run` throws; anything else thrown, or nothing, fails the test. */
export function thrownBy(run: () => unknown): AcrCredentialError {
  try {
    run();
  } catch (error) {
    if (error instanceof AcrCredentialError) return error;
    throw error;
  }
  throw new Error("expected an AcrCredentialError, but nothing was thrown");
}

/** The AcrCredentialError `promise` rejects with; anything else, or a fulfilment, fails the test. */
export async function rejectionOf(promise: Promise<unknown>): Promise<AcrCredentialError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AcrCredentialError) return error;
    throw error;
  }
  throw new Error("expected an AcrCredentialError, but the promise fulfilled");
}
