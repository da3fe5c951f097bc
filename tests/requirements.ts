// Test helper: tests that need /dev/kvm or QEMU skip with a printed reason
// where they are missing, except under CI=true, where that is a failure.

const inCi = Deno.env.get("CI") === "true";

function missing(what: string, why: string): boolean {
  const msg = `${what} unavailable: ${why}`;
  if (inCi) throw new Error(`${msg} (CI=true: this must run here)`);
  console.log(`SKIP: ${msg}`);
  return false;
}

/** True when /dev/kvm can be opened read-write; see module comment. */
export function haveKvm(): boolean {
  try {
    const f = Deno.openSync("/dev/kvm", { read: true, write: true });
    f.close();
    return true;
  } catch (e) {
    return missing("/dev/kvm", (e as Error).message);
  }
}

/** The QEMU binary iohub tests use. */
export const QEMU = Deno.env.get("IOHUB_QEMU") ?? "qemu-system-x86_64";

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

/** True when the GNU assembler is installed; see module comment. */
export function haveBinutils(): boolean {
  try {
    new Deno.Command("as", { args: ["--version"], stdout: "null" })
      .outputSync();
    return true;
  } catch (e) {
    return missing("binutils", (e as Error).message);
  }
}

/** True when gcc is installed (layout checks against kernel headers). */
export function haveGcc(): boolean {
  try {
    new Deno.Command("gcc", { args: ["--version"], stdout: "null" })
      .outputSync();
    return true;
  } catch (e) {
    return missing("gcc", (e as Error).message);
  }
}
