// Builds the QEMU guests (guest/boot/boot.S, guest/edu/edu.S) into 1.44 MB
// floppy images SeaBIOS boots: the assembled program from sector 0, zeros
// after. Images live in imageDir() (build/guests/ from source), named by a
// hash of their bytes.

import { buildGuestBytes, digest } from "./build.ts";
import { imageDir } from "./dirs.ts";

/** Size of a 1.44 MB floppy image, the medium SeaBIOS boots the guest from. */
export const FLOPPY_SIZE = 1474560;

/** Where SeaBIOS loads the boot sector, the program's link origin. */
export const BOOT_ORIGIN = 0x7c00;

const GUEST_DIR = new URL("../../guest/", import.meta.url).pathname;

/** The demo guest's source. */
export const BOOT_SOURCE = `${GUEST_DIR}boot/boot.S`;

/** The edu guest's source. */
export const EDU_SOURCE = `${GUEST_DIR}edu/edu.S`;

/**
 * Assembles `source` (a boot-sector program, .S) at 0x7c00 and returns the
 * absolute path of a raw 1.44 MB floppy image holding it, building the
 * image only when no image of the same program exists yet. Failures of `as`
 * or `ld` propagate as GuestBuildError.
 */
export async function buildFloppyImage(source: string): Promise<string> {
  const program = await buildGuestBytes(source, { origin: BOOT_ORIGIN });
  if (program.length > FLOPPY_SIZE) {
    throw new RangeError(
      `${source} assembles to ${program.length} bytes, more than a floppy`,
    );
  }
  const image = new Uint8Array(FLOPPY_SIZE);
  image.set(program);
  const name = source.split("/").pop()!.replace(/\.[Ss]$/, "");
  const dir = imageDir();
  const path = `${dir}${name}-${await digest(image)}.img`;
  try {
    if ((await Deno.stat(path)).size === FLOPPY_SIZE) return path;
  } catch {
    // Not built yet for this program.
  }
  await Deno.mkdir(dir, { recursive: true });
  // Concurrent builders each write their own temp file; rename is atomic.
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeFile(tmp, image);
    await Deno.rename(tmp, path);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
  return path;
}

/**
 * The demo guest, guest/boot/boot.S, as a floppy image (see
 * buildFloppyImage).
 *
 * @example
 * ```ts
 * const outcome = await launch({ guest: await buildBootImage() });
 * ```
 */
export async function buildBootImage(): Promise<string> {
  return await buildFloppyImage(BOOT_SOURCE);
}

/** The edu guest, guest/edu/edu.S, as a floppy image (see buildFloppyImage). */
export async function buildEduImage(): Promise<string> {
  return await buildFloppyImage(EDU_SOURCE);
}
