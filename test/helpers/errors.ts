/** Test helper: the PoskoError a function throws. */
import { PoskoError } from '../../src/domain/errors.ts';

/** Runs fn and returns the PoskoError it throws (fails the test if it throws nothing or something else). */
export function errorOf(fn: () => unknown): PoskoError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PoskoError) return e;
    throw e;
  }
  throw new Error('expected a PoskoError, nothing was thrown');
}
