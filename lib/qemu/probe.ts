// Finds the QEMU binary `iohub launch` drives and checks, before anything is
// spawned, that it is a QEMU recent enough to have the multi-process devices
// (x-pci-proxy-dev) our remote speaks mpqemu with.

import { runTool } from "../run_tool.ts";

/** The binary looked up on PATH when neither --qemu nor IOHUB_QEMU is given. */
export const DEFAULT_QEMU = "qemu-system-x86_64";

/**
 * The QEMU to use when none is named: $IOHUB_QEMU if set (and readable
 * under the permissions given), else DEFAULT_QEMU on PATH.
 */
export function defaultQemu(): string {
  try {
    return Deno.env.get("IOHUB_QEMU") || DEFAULT_QEMU;
  } catch {
    return DEFAULT_QEMU;
  }
}

/**
 * The oldest QEMU with x-pci-proxy-dev, fd= and DEVICE_RESET: the
 * multi-process series was merged in February 2021 and released in 6.0.
 * iohub is developed and tested against 7.2; the protocol is unchanged
 * between the two.
 */
export const MIN_QEMU_VERSION: readonly [number, number] = [6, 0];

/** A QEMU that cannot serve `iohub launch`; the message is one line. */
export class QemuUnusableError extends Error {
  /** Builds the error with a one-line message naming the binary. */
  constructor(message: string) {
    super(message);
    this.name = "QemuUnusableError";
  }
}

/** What probeQemu learnt about a usable QEMU. */
export interface QemuInfo {
  /** The path or name it was run as. */
  path: string;
  /** major, minor, micro from `--version`. */
  version: [number, number, number];
}

/** Parses "QEMU emulator version 7.2.22 (...)"; null when absent. */
export function parseQemuVersion(
  text: string,
): [number, number, number] | null {
  const m = /QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (m === null) return null;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? "0")];
}

async function run(path: string, args: string[]): Promise<string> {
  try {
    const out = await runTool(path, args);
    return out.stdout + out.stderr;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new QemuUnusableError(
        `${path} not found (apt-get install qemu-system-x86)`,
      );
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new QemuUnusableError(`${path}: ${(e as Error).message}`);
    }
    throw new QemuUnusableError(
      `${path} could not be run: ${(e as Error).message}`,
    );
  }
}

/**
 * Runs `path --version` and `path -device help` and returns the version, or
 * throws QemuUnusableError saying why this binary cannot be used: missing,
 * not QEMU, older than MIN_QEMU_VERSION, or built without multi-process
 * support.
 */
export async function probeQemu(
  path: string = defaultQemu(),
): Promise<QemuInfo> {
  const banner = await run(path, ["--version"]);
  const version = parseQemuVersion(banner);
  if (version === null) {
    const first = banner.trim().split("\n")[0] ?? "";
    throw new QemuUnusableError(
      `${path} is not QEMU: '--version' printed ${
        first === "" ? "nothing" : `'${first.slice(0, 80)}'`
      }`,
    );
  }
  const [major, minor] = version;
  const [minMajor, minMinor] = MIN_QEMU_VERSION;
  if (major < minMajor || (major === minMajor && minor < minMinor)) {
    throw new QemuUnusableError(
      `${path} is QEMU ${version.join(".")}, too old: the multi-process ` +
        `devices need ${minMajor}.${minMinor} or later (iohub is tested with 7.2)`,
    );
  }
  const devices = await run(path, ["-device", "help"]);
  if (!/"x-pci-proxy-dev"/.test(devices)) {
    throw new QemuUnusableError(
      `${path} (QEMU ${version.join(".")}) lacks the multi-process devices: ` +
        `'-device help' has no x-pci-proxy-dev (build QEMU with --enable-multiprocess)`,
    );
  }
  return { path, version };
}
