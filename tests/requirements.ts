// Test helper: tests that need /dev/kvm or QEMU skip with a printed reason
// where they are missing, except under CI=true, where that is a failure (one
// exception for KVM: see haveKvm).

import { landlockAbi } from "../ffi/mod.ts";
import { kernelHasKvmDevice, kvmUnavailableReason } from "../lib/kvm/mod.ts";
import { defaultQemu } from "../lib/qemu/probe.ts";
import { MIN_LANDLOCK_ABI } from "../lib/remote/sandbox.ts";

const inCi = Deno.env.get("CI") === "true";

function missing(what: string, why: string): boolean {
  const msg = `${what} unavailable: ${why}`;
  if (inCi) throw new Error(`${msg} (CI=true: this must run here)`);
  console.log(`SKIP: ${msg}`);
  return false;
}

/**
 * True when /dev/kvm can be opened read-write; see module comment. One case
 * skips even under CI=true: a kernel that registered no KVM device at all
 * (no 'kvm' in /proc/misc, e.g. a PVM guest kernel) cannot offer KVM to any
 * code, so those tests are reported as blocked by the machine, not failed.
 * A /dev/kvm missing or locked while the kernel has KVM is a CI failure.
 */
export function haveKvm(): boolean {
  const why = kvmUnavailableReason();
  if (why === null) return true;
  if (kernelHasKvmDevice() === false) {
    console.log(`BLOCKED: /dev/kvm unavailable on this machine: ${why}`);
    return false;
  }
  return missing("/dev/kvm", why);
}

/** The QEMU binary iohub tests use. */
export const QEMU = defaultQemu();

/** True when QEMU runs and has x-pci-proxy-dev; see module comment. */
export function haveQemu(): boolean {
  try {
    const out = new Deno.Command(QEMU, {
      args: ["-device", "help"],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (!new TextDecoder().decode(out.stdout).includes("x-pci-proxy-dev")) {
      return missing("QEMU", `${QEMU} has no x-pci-proxy-dev`);
    }
    return true;
  } catch (e) {
    return missing("QEMU", `${QEMU}: ${(e as Error).message}`);
  }
}

// Whether `tool` can be started (`tool --version`), else why `what` is missing.
function haveTool(what: string, tool: string): boolean {
  try {
    new Deno.Command(tool, { args: ["--version"], stdout: "null" })
      .outputSync();
    return true;
  } catch (e) {
    return missing(what, (e as Error).message);
  }
}

/** True when the GNU assembler is installed; see module comment. */
export function haveBinutils(): boolean {
  return haveTool("binutils", "as");
}

/** True when util-linux's prlimit is installed (limits of a running remote). */
export function havePrlimit(): boolean {
  return haveTool("prlimit", "prlimit");
}

/** True when gcc is installed (layout checks against kernel headers). */
export function haveGcc(): boolean {
  return haveTool("gcc", "gcc");
}

/**
 * True when the kernel offers Landlock ABI 6 or later (what --sandbox
 * needs). Like a kernel without KVM, a kernel without it blocks those tests
 * even under CI=true: no code can add Landlock to a kernel.
 */
export function haveLandlock(): boolean {
  let why: string;
  try {
    const abi = landlockAbi();
    if (abi >= MIN_LANDLOCK_ABI) return true;
    why = `ABI ${abi} < ${MIN_LANDLOCK_ABI}`;
  } catch (e) {
    why = (e as Error).message;
  }
  console.log(`BLOCKED: Landlock unavailable on this kernel: ${why}`);
  return false;
}
