// Types for deno-std's untyped JS build of @std/assert (the npm package
// ships plain JS). Mirrors the JSR module's signatures for what iohub uses.

/** Error thrown by failed assertions. */
export class AssertionError extends Error {
  constructor(message: string);
}
/** Asserts `expr` is truthy. */
export function assert(expr: unknown, msg?: string): asserts expr;
/** Asserts `expr` is falsy. */
export function assertFalse(expr: unknown, msg?: string): void;
/** Asserts deep equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void;
/** Asserts deep inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void;
/** Asserts `actual` is neither null nor undefined. */
export function assertExists<T>(
  actual: T,
  msg?: string,
): asserts actual is NonNullable<T>;
/** Asserts `actual > expected`. */
export function assertGreater<T>(actual: T, expected: T, msg?: string): void;
/** Asserts `actual >= expected`. */
export function assertGreaterOrEqual<T>(
  actual: T,
  expected: T,
  msg?: string,
): void;
/** Asserts `actual < expected`. */
export function assertLess<T>(actual: T, expected: T, msg?: string): void;
/** Asserts `actual` matches `expected`. */
export function assertMatch(
  actual: string,
  expected: RegExp,
  msg?: string,
): void;
/** Asserts `actual` contains `expected`. */
export function assertStringIncludes(
  actual: string,
  expected: string,
  msg?: string,
): void;
/** Asserts `fn` throws, returning the error. */
export function assertThrows(fn: () => unknown, msg?: string): unknown;
/** Asserts `fn` throws an instance of `ErrorClass`, returning it. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  msgIncludes?: string,
  msg?: string,
): E;
/** Asserts `fn` rejects, returning the error. */
export function assertRejects(
  fn: () => PromiseLike<unknown>,
  msg?: string,
): Promise<unknown>;
/** Asserts `fn` rejects with an instance of `ErrorClass`, returning it. */
export function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  msgIncludes?: string,
  msg?: string,
): Promise<E>;
/** Fails unconditionally. */
export function fail(msg?: string): never;
