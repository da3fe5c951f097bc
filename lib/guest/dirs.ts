// Where guests live: assembled programs under build/guests/ (embedded in a
// compiled binary, which reads them but cannot write there), and floppy
// images, which QEMU opens and so must be real files.

/** Built guest programs, keyed by source hash; embedded when compiled. */
export const BUILD_DIR = new URL("../../build/guests/", import.meta.url)
  .pathname;

/** Reads an environment variable (injectable for tests). */
export type EnvReader = (name: string) => string | undefined;

/**
 * The directory floppy images are written to: build/guests/ from source; in
 * a compiled binary, whose build/ is read-only and invisible to QEMU, the
 * user's cache ($XDG_CACHE_HOME/iohub/guests, else ~/.cache/iohub/guests).
 */
export function imageDir(
  standalone: boolean = Deno.build.standalone,
  env: EnvReader = (name) => Deno.env.get(name),
): string {
  if (!standalone) return BUILD_DIR;
  const cache = env("XDG_CACHE_HOME") || `${env("HOME") ?? "/tmp"}/.cache`;
  return `${cache}/iohub/guests/`;
}
