// Test helper: a temporary directory that lives exactly as long as the code
// using it, removed with its contents however that code ends.

/**
 * Runs `fn` with a new temporary directory named with `prefix`, and removes
 * the directory and everything in it once `fn` has settled (returned or
 * thrown); resolves to what `fn` resolves to.
 */
export async function withTempDir<T>(
  prefix: string,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
