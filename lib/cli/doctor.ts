// `iohub doctor`: checks what iohub needs on this machine (KVM and its irqfd
// capabilities, QEMU with the multi-process devices, binutils), then proves
// the interrupt path end to end: a tiny KVM guest raises interrupts on an
// iohub-testdev served by a real `iohub remote`, through our proxy and the
// in-kernel PIC. One line per check; exit 0 only if every check passed.

import { Kvm, KVM_API_VERSION, KvmCap } from "../kvm/mod.ts";
import {
  createIrqGuestMachine,
  IrqGuestFlag,
  readIrqGuestCounters,
  writeIrqGuestParams,
} from "../kvm/irq_guest.ts";
import {
  measureUserSinkInterrupts,
  userSinkOk,
} from "../proxy/irq_roundtrip.ts";
import { spawnTestdevRemote } from "../qemu/spawn_remote.ts";
import { ProxyDevice } from "../proxy/proxy_device.ts";
import { DEFAULT_QEMU, defaultQemu, probeQemu } from "../qemu/probe.ts";
import { runTool } from "../run_tool.ts";
import {
  type Command,
  describeError,
  EXIT_STATUS_HELP,
  parseCommandArgs,
  UsageError,
} from "./common.ts";

const HELP = `usage: iohub doctor [--qemu PATH] [--interrupts N]

Checks this machine for what iohub needs and prints one line per check:
  /dev/kvm           can be opened read-write
  KVM API            version ${KVM_API_VERSION}
  KVM_CAP_IRQFD      the remote can raise interrupts through an eventfd
  KVM_CAP_IRQFD_RESAMPLE
                     level-triggered INTx with end-of-interrupt notification
  QEMU               present, recent enough, has x-pci-proxy-dev and
                     -machine x-remote
  binutils           'as' and 'ld' build the tiny guests (a compiled
                     iohub carries them and needs neither)
  interrupt path     a real-mode KVM guest takes N interrupts from an
                     iohub-testdev in a real 'iohub remote' (through our
                     proxy, the irqfd and the in-kernel PIC) and the
                     measured round trip per interrupt is printed
  irqfd path, no KVM only where KVM is missing: the same remote's interrupts
                     read from the irqfd in user space (informational)

options:
  --qemu PATH        QEMU binary (default: $IOHUB_QEMU if set, else
                     ${DEFAULT_QEMU} on PATH)
  --interrupts N     interrupts for the round trip check (default 1000)
  --help             this text

${EXIT_STATUS_HELP}
  0 means every check passed, 1 that one failed.`;

/** One check's outcome. */
interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

// The guest reaches the device below 1 MiB (real mode) on IRQ 5.
const GUEST_BAR0 = 0xd0000;
const GUEST_BAR1 = 0xc040;
const GUEST_IRQ = 5;
const RUN_TIMEOUT_MS = 30_000;
const INTERRUPT_PATH = "interrupt path";

function kvmChecks(): Check[] {
  const checks: Check[] = [];
  let kvm: Kvm;
  try {
    kvm = Kvm.open();
  } catch (e) {
    return [{ name: "/dev/kvm", ok: false, detail: describeError(e) }];
  }
  try {
    checks.push({ name: "/dev/kvm", ok: true, detail: "opened read-write" });
    const version = kvm.apiVersion();
    checks.push({
      name: "KVM API",
      ok: version === KVM_API_VERSION,
      detail: `version ${version}`,
    });
    for (
      const [name, cap] of [
        ["KVM_CAP_IRQFD", KvmCap.IRQFD],
        ["KVM_CAP_IRQFD_RESAMPLE", KvmCap.IRQFD_RESAMPLE],
      ] as const
    ) {
      const v = kvm.checkExtension(cap);
      checks.push({
        name,
        ok: v > 0,
        detail: v > 0 ? "supported" : "missing",
      });
    }
  } catch (e) {
    checks.push({ name: "KVM", ok: false, detail: describeError(e) });
  } finally {
    kvm.close();
  }
  return checks;
}

async function qemuCheck(qemu: string): Promise<Check> {
  try {
    const info = await probeQemu(qemu);
    const machines = (await runTool(qemu, ["-machine", "help"])).stdout;
    if (!/^x-remote\s/m.test(machines)) {
      return {
        name: "QEMU",
        ok: false,
        detail: `${qemu} ${info.version.join(".")} has no -machine x-remote`,
      };
    }
    return {
      name: "QEMU",
      ok: true,
      detail: `${qemu} ${
        info.version.join(".")
      } with x-pci-proxy-dev and x-remote`,
    };
  } catch (e) {
    return { name: "QEMU", ok: false, detail: describeError(e) };
  }
}

async function binutilsCheck(): Promise<Check> {
  if (Deno.build.standalone) {
    return {
      name: "binutils",
      ok: true,
      detail: "not needed: this compiled iohub carries its guests prebuilt",
    };
  }
  const found: string[] = [];
  for (const tool of ["as", "ld"]) {
    try {
      const first = (await runTool(tool, ["--version"])).stdout.split("\n")[0];
      found.push(`${tool}: ${first}`);
    } catch (e) {
      return {
        name: "binutils",
        ok: false,
        detail: `${tool}: ${describeError(e)} (apt-get install binutils)`,
      };
    }
  }
  return { name: "binutils", ok: true, detail: found.join("; ") };
}

/** Runs the interrupt guest against the device behind `proxy`. */
async function runGuest(proxy: ProxyDevice, count: number): Promise<Check> {
  using m = await createIrqGuestMachine();
  // The proxy leaves KVM before the VM closes (`using` disposes m last).
  try {
    proxy.syncSysmem([m.sysmemRegion()]);
    proxy.setupIrqfd();
    proxy.probe();
    proxy.mapBars([GUEST_BAR0, GUEST_BAR1]);
    proxy.attachKvm(m.vm, GUEST_IRQ);
    writeIrqGuestParams(m, {
      irq: GUEST_IRQ,
      flags: IrqGuestFlag.MMIO | IrqGuestFlag.SELF_RAISE,
      count,
      mmioBase: GUEST_BAR0,
    });
    const r = await m.run({
      onMmio: (addr, isWrite, data) => proxy.handleMmio(addr, isWrite, data),
      onIo: (port, _size, isWrite, data) =>
        proxy.handlePio(port, isWrite, data),
      timeoutMs: RUN_TIMEOUT_MS,
    });
    const g = readIrqGuestCounters(m);
    return {
      name: INTERRUPT_PATH,
      ok: r.status === "done" && g.delivered === count &&
        g.completed === count && g.spurious === 0,
      detail: `${g.delivered}/${count} interrupts from a real iohub remote ` +
        `through irqfd into a KVM guest, ${
          (r.elapsedMs * 1000 / count).toFixed(1)
        } us per round trip (raise -> INTx -> handler -> ACK -> EOI)`,
    };
  } finally {
    proxy.close();
  }
}

/**
 * N guest-raised interrupts through a real remote: the guest writes
 * IRQ_RAISE, the remote's IOHUB writes the irqfd, KVM injects into the
 * guest's handler, which ACKs and EOIs.
 */
async function interruptCheck(count: number): Promise<Check> {
  const remote = spawnTestdevRemote(["doctor"]);
  const proxy = new ProxyDevice(remote.fds[0], { name: "doctor" });
  let check: Check;
  try {
    check = await runGuest(proxy, count);
  } catch (e) {
    proxy.close();
    check = { name: INTERRUPT_PATH, ok: false, detail: describeError(e) };
  }
  const { code, stderr } = await remote.finish();
  if (check.ok && code !== 0) {
    check = {
      name: INTERRUPT_PATH,
      ok: false,
      detail: `the remote exited with ${code}: ${stderr.trim()}`,
    };
  }
  return check;
}

/** The remote's interrupt path read in user space (for machines without KVM). */
async function userSinkCheck(count: number): Promise<Check> {
  const name = "irqfd path, no KVM";
  try {
    const r = await measureUserSinkInterrupts(count);
    return {
      name,
      ok: userSinkOk(r),
      detail: `${r.delivered}/${count} interrupts from a real iohub remote ` +
        `read from the irqfd in user space, ${
          r.microsPerInterrupt.toFixed(1)
        } us per round trip; a level held across EOI ${
          r.reassertedWhileHeld ? "was" : "was NOT"
        } re-asserted (informational)`,
    };
  } catch (e) {
    return { name, ok: false, detail: describeError(e) };
  }
}

/** The `iohub doctor` subcommand. */
export const doctorCommand: Command = {
  summary: "check KVM, QEMU and binutils, and time a real interrupt path",
  help: HELP,
  async run(args: string[]): Promise<number> {
    const parsed = parseCommandArgs("doctor", args, {
      string: ["qemu", "interrupts"],
    });
    const raw = (parsed.interrupts as string | undefined) ?? "1000";
    if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) {
      throw new UsageError(`doctor: --interrupts ${raw}: expected 1..65535`);
    }
    const print = (c: Check): void =>
      console.log(`${c.ok ? "pass" : "FAIL"}  ${c.name.padEnd(24)}${c.detail}`);
    const kvm = kvmChecks();
    kvm.forEach(print);
    const qemu = await qemuCheck(
      (parsed.qemu as string | undefined) ?? defaultQemu(),
    );
    print(qemu);
    const binutils = await binutilsCheck();
    print(binutils);
    const checks = [...kvm, qemu, binutils];
    if (!kvm.every((c) => c.ok)) {
      // Without KVM no guest takes interrupts, but whether the remote's
      // irqfd/resamplefd path works can still be told (not counted: the
      // machine still lacks what iohub needs).
      print(await userSinkCheck(Number(raw)));
    }
    // The interrupt path needs KVM and the guest builder, not QEMU.
    const failed = [...kvm, binutils].filter((c) => !c.ok).map((c) => c.name);
    const path = failed.length === 0 ? await interruptCheck(Number(raw)) : {
      name: INTERRUPT_PATH,
      ok: false,
      detail: `not run: the ${failed.join(" and ")} check${
        failed.length > 1 ? "s" : ""
      } failed`,
    };
    print(path);
    checks.push(path);
    return checks.every((c) => c.ok) ? 0 : 1;
  },
};
