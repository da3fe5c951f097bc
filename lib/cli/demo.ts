// `iohub demo`: the README's main job. Boots QEMU 7.2 with the demo guest
// and one iohub-testdev served by our TypeScript remote, shows the guest's
// console, then summarises what crossed the process boundary. Where the
// machine has no KVM, QEMU's proxy cannot deliver interrupts (it registers
// its irqfd with KVM only), so the demo also drives our device's interrupt
// path through our own proxy and a user-space sink.

import { buildBootImage, buildEduImage } from "../guest/boot_image.ts";
import { type GuestResult, parseGuestResult } from "../guest/result.ts";
import { kvmUnavailableReason } from "../kvm/mod.ts";
import {
  measureUserSinkInterrupts,
  userSinkOk,
} from "../proxy/irq_roundtrip.ts";
import { launch } from "../qemu/launch.ts";
import { EXIT, type LaunchOutcome, qemuLineSeverity } from "../qemu/outcome.ts";
import { type LogSink, logSink, type Verbosity } from "../log.ts";
import { DEFAULT_QEMU, defaultQemu } from "../qemu/probe.ts";
import { type ClosedDevice, parseCloseLine } from "../remote/close_line.ts";
import {
  type Command,
  EXIT_STATUS_HELP,
  parseCommandArgs,
  signalStatus,
  StopOnSignals,
  UsageError,
  VERBOSITY_OPTIONS,
  verbosityOf,
} from "./common.ts";

const HELP =
  `usage: iohub demo [--device testdev|edu] [--qemu PATH] [--accel kvm|tcg]
                  [--timeout SECONDS] [--trace FILE] [--control PATH]
                  [--quiet | --verbose]

Builds the demo guest from guest/boot/*.S with binutils, then runs
'iohub launch' with it: QEMU 7.2, its x-pci-proxy-dev talking to an iohub
remote that serves iohub-testdev. The guest finds the device on the PCI bus,
takes interrupts through its memory and I/O BARs (raised by the remote
straight into KVM through an irqfd), checks DMA both ways, measures cycles
per interrupt, resets the machine through port 0xcf9 and checks the device
came back with reset values. Prints a summary; exits 0 when every check the
accelerator allows passed.

Without KVM (or with --accel tcg) QEMU's proxy delivers no interrupts: the
guest reports 0 of them, and the demo then shows the device's interrupts
through our own proxy instead, read from the irqfd in user space and
acknowledged through the resamplefd.

With --device edu the guest is guest/edu/edu.S and the remote serves QEMU's
educational device 'edu' instead: the guest checks its ID and liveness
registers, computes 10! and moves 4 KiB through its DMA buffer both ways,
taking the completion interrupts under KVM and polling them under TCG.

options:
  --device TYPE      testdev (default) or edu
  --qemu PATH        QEMU binary (default: $IOHUB_QEMU if set, else
                     ${DEFAULT_QEMU} on PATH)
  --accel kvm|tcg    accelerator (default: kvm when /dev/kvm opens, else tcg)
  --timeout SECONDS  give up after this long (default 60)
  --trace FILE       the remote behind QEMU writes a JSON line per message
                     to FILE (the later phase through our own proxy is not
                     traced)
  --control PATH     that remote answers 'iohub stats PATH' while it runs
  --quiet            print the result and errors only, not the guest's console
  --verbose          also print the remote's per-connection details
  --help             this text

${EXIT_STATUS_HELP}
  0 means every check the accelerator allows passed; a QEMU or remote that
  could not run ends with the status 'iohub launch' gives it (3-6, 130, 143).`;

const SINK_INTERRUPTS = 1000;
const RESULT_CHECKS = ["dma_to_guest", "dma_from_guest", "reset"] as const;

/** A device's IOHUB counters from its close line, for the summaries. */
function iohubLine(c: ClosedDevice): string {
  const n = c.counters;
  return `  remote IOHUB, ${c.id}: asserts=${n.asserts} deasserts=${n.deasserts} resamples=${n.resamples} reasserts=${n.reasserts}`;
}

/**
 * Prints the summary after a run: `title`, the guest's `rows`, the
 * remote's counters per device, then the guest's status and how long it
 * took.
 */
function printSummary(
  title: string,
  rows: string[],
  r: GuestResult,
  counters: ClosedDevice[],
  seconds: number,
): void {
  const lines = [
    "",
    title,
    ...rows,
    ...counters.map(iohubLine),
    `  guest status                   ${r.status ?? "?"} (${
      seconds.toFixed(1)
    } s)`,
  ];
  for (const line of lines) console.log(line);
}

/** The testdev guest's result fields, one summary row each. */
function testdevRows(r: GuestResult): string[] {
  return [
    `  devices found on the PCI bus   ${r.devices ?? "?"}`,
    `  interrupts via BAR0 (MMIO)     ${r.irq_mmio ?? "?"} delivered`,
    `  interrupts via BAR1 (port I/O) ${r.irq_pio ?? "?"} delivered`,
    `  cycles per interrupt (rdtsc)   ${r.cycles_per_irq ?? "?"}`,
    `  DMA device -> guest RAM        ${r.dma_to_guest ?? "?"}`,
    `  DMA guest RAM -> device        ${r.dma_from_guest ?? "?"}`,
    `  system reset -> DEVICE_RESET   ${r.reset ?? "?"}`,
  ];
}

/** Whether the guest's interrupt phases all got what they wanted. */
function interruptsDelivered(r: GuestResult): boolean {
  return [r.irq_mmio, r.irq_pio].every((v) => {
    const m = /^(\d+)\/(\d+)$/.exec(v ?? "");
    return m !== null && m[1] === m[2] && Number(m[2]) > 0;
  });
}

/** The checks that do not need interrupts: devices, DMA, reset. */
function nonInterruptChecksPassed(r: GuestResult): boolean {
  return Number(r.devices ?? "0") >= 1 &&
    RESULT_CHECKS.every((k) => r[k] === "ok");
}

/** The edu guest's result fields, one summary row each. */
function eduRows(r: GuestResult): string[] {
  return [
    `  edu devices on the PCI bus     ${r.devices ?? "?"}`,
    `  ID register 0x010000ed         ${r.id ?? "?"}`,
    `  liveness (inverts)             ${r.liveness ?? "?"}`,
    `  10! from the factorial unit    ${r.factorial ?? "?"}`,
    `  factorial completion           ${r.fact_irq ?? "?"}`,
    `  DMA 4 KiB RAM -> edu -> RAM    ${r.dma ?? "?"}`,
    `  DMA completions                ${r.dma_irq ?? "?"}`,
  ];
}

/** The edu guest's verdict: all checks, completions as `accel` allows. */
function eduPassed(r: GuestResult, accel: "kvm" | "tcg"): boolean {
  const how = accel === "kvm" ? "irq" : "polled";
  return r.status === "ok" && r.fact_irq === how && r.dma_irq === how;
}

interface GuestRun {
  result: GuestResult | null;
  counters: ClosedDevice[];
  out: LaunchOutcome;
  seconds: number;
}

/** How to watch a demo run and what to print. */
interface RunOptions {
  /** --trace FILE for the remote. */
  trace?: string;
  /** --control PATH for the remote. */
  control?: string;
  /** How much to print. */
  verbosity: Verbosity;
  /** Where to print it. */
  say: LogSink;
  /** Aborted by SIGINT or SIGTERM (the demo's StopOnSignals). */
  signal: AbortSignal;
}

/**
 * Runs `image` against one device of `type`, echoing every side's lines
 * through `say` (the remote gets `verbosity`, but never --quiet: its close
 * lines carry the counters the summary shows).
 */
async function runGuest(
  image: string,
  type: string,
  qemu: string,
  accel: "kvm" | "tcg",
  timeoutMs: number,
  run: RunOptions,
): Promise<GuestRun> {
  const { say, verbosity } = run;
  const t0 = performance.now();
  let result: GuestResult | null = null;
  const counters: ClosedDevice[] = [];
  const out = await launch({
    qemu,
    accel,
    guest: image,
    devices: [{ type, id: `${type}0` }],
    timeoutMs,
    trace: run.trace,
    control: run.control,
    signal: run.signal,
    verbosity: verbosity === "verbose" ? "verbose" : "normal",
    onStarted: (s) =>
      say(
        `iohub demo: QEMU pid ${s.qemuPid} (x-pci-proxy-dev, -accel ${accel}), iohub remote pid ${s.remotePid}`,
        "info",
      ),
    onSerialLine: (line) => {
      say(`  guest | ${line}`, "info");
      result = parseGuestResult(line) ?? result;
    },
    onRemoteLine: (line) => {
      say(`  remote| ${line}`, "info");
      const c = parseCloseLine(line);
      if (c !== null) counters.push(c);
    },
    onQemuLine: (line) => say(`  qemu  | ${line}`, qemuLineSeverity(line)),
  });
  return {
    result,
    counters,
    out,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Prints the user-space interrupt path run; returns whether it behaved. */
async function userSinkInterrupts(say: LogSink): Promise<boolean> {
  const r = await measureUserSinkInterrupts(SINK_INTERRUPTS);
  console.log(
    `  ${r.delivered}/${r.count} interrupts from the TypeScript device ` +
      `read from its irqfd, ${
        r.microsPerInterrupt.toFixed(1)
      } us per raise -> irqfd -> ACK -> EOI`,
  );
  console.log(
    `  level held across an EOI: ${
      r.reassertedWhileHeld
        ? "re-asserted through the resamplefd"
        : "NOT re-asserted"
    }; after IRQ_ACK + EOI: ${r.quietAfterAck ? "quiet" : "STILL asserted"}`,
  );
  for (const line of r.remoteLines) say(`  remote| ${line}`, "info");
  return userSinkOk(r);
}

/** The `iohub demo` subcommand. */
export const demoCommand: Command = {
  summary: "boot QEMU with a guest driving our TypeScript device",
  help: HELP,
  async run(args: string[]): Promise<number> {
    const parsed = parseCommandArgs("demo", args, {
      string: ["qemu", "timeout", "accel", "device", "trace", "control"],
      boolean: VERBOSITY_OPTIONS,
    });
    const timeoutRaw = (parsed.timeout as string | undefined) ?? "60";
    if (!/^\d+(\.\d+)?$/.test(timeoutRaw) || Number(timeoutRaw) <= 0) {
      throw new UsageError(
        `demo: --timeout ${timeoutRaw}: not a number of seconds`,
      );
    }
    const accelRaw = parsed.accel as string | undefined;
    if (accelRaw !== undefined && accelRaw !== "kvm" && accelRaw !== "tcg") {
      throw new UsageError(`demo: --accel ${accelRaw}: expected kvm or tcg`);
    }
    const device = (parsed.device as string | undefined) ?? "testdev";
    if (device !== "testdev" && device !== "edu") {
      throw new UsageError(`demo: --device ${device}: expected testdev or edu`);
    }
    const verbosity = verbosityOf(parsed, "demo");
    // The demo's running commentary goes to stdout, its summary always.
    const say = logSink("", verbosity, (line) => console.log(line));
    let accel: "kvm" | "tcg" = accelRaw ?? "kvm";
    if (accelRaw === undefined) {
      const why = kvmUnavailableReason();
      if (why !== null) {
        accel = "tcg";
        say(`iohub demo: no KVM here (${why})`, "info");
        say(
          "iohub demo: running QEMU under TCG: everything but interrupts " +
            "works there (QEMU's proxy registers its irqfd with KVM only)",
          "info",
        );
      }
    }
    const qemu = (parsed.qemu as string | undefined) ?? defaultQemu();
    // Ctrl-C or SIGTERM at any phase ends the demo after that phase, with
    // one line and launch's statuses (130, 143); the phases around QEMU's
    // take a second or two.
    using stop = new StopOnSignals();
    const stopped = (): number | null => {
      const status = signalStatus(stop.signal);
      if (status !== null) console.error(`iohub: demo: ${stop.signal.reason}`);
      return status;
    };
    // Tools the demo runs (as, ld, QEMU's probes, the sink's remote) share
    // a terminal's Ctrl-C and fail of it: the signal, not their failure, is
    // what ended the run.
    try {
      const guestDir = device === "edu" ? "guest/edu" : "guest/boot";
      say(`iohub demo: assembling the guest (${guestDir}/*.S) ...`, "info");
      const image = device === "edu"
        ? await buildEduImage()
        : await buildBootImage();
      const early = stopped();
      if (early !== null) return early;
      const { result, counters, out, seconds } = await runGuest(
        image,
        device,
        qemu,
        accel,
        Number(timeoutRaw) * 1000,
        {
          trace: parsed.trace as string | undefined,
          control: parsed.control as string | undefined,
          verbosity,
          say,
          signal: stop.signal,
        },
      );
      const during = signalStatus(stop.signal);
      if (during !== null) {
        // Launch says what it stopped when the signal stopped it.
        console.error(
          `iohub: demo: ${
            out.status === during ? out.message : stop.signal.reason
          }`,
        );
        return during;
      }
      if (result === null) {
        // QEMU or the remote could not run, or the guest never got that far:
        // launch's one line says which side, its status says it to scripts.
        console.error(`iohub: demo: ${out.message}`);
        return out.status === EXIT.OK ? 1 : out.status;
      }
      if (device === "edu") {
        printSummary(
          "iohub demo result (edu):",
          eduRows(result),
          result,
          counters,
          seconds,
        );
        if (!eduPassed(result, accel)) {
          throw new Error(
            `demo failed: the edu guest expected ${
              accel === "kvm" ? "interrupts" : "polled completions"
            } under ${accel} (${out.message})`,
          );
        }
        if (accel === "tcg") {
          console.log(
            "\niohub demo: under TCG QEMU's proxy delivers no interrupts, so " +
              "the guest polled edu's completions; under KVM it takes them",
          );
        }
        return EXIT.OK;
      }
      const r = result;
      printSummary("iohub demo result:", testdevRows(r), r, counters, seconds);
      if (accel === "kvm") {
        if (out.status !== EXIT.OK || r.status !== "ok") {
          throw new Error(`demo failed: ${out.message}`);
        }
        return EXIT.OK;
      }
      if (!nonInterruptChecksPassed(r) || interruptsDelivered(r)) {
        throw new Error(
          `demo failed under TCG: expected devices, DMA and reset ok and no interrupts (${out.message})`,
        );
      }
      console.log(
        "\niohub demo: under TCG the guest's status is fail only because no " +
          "interrupt can reach it; devices, DMA and reset passed",
      );
      console.log(
        "iohub demo: interrupts through our own proxy (irqfd read in user space):",
      );
      const before = stopped();
      if (before !== null) return before;
      const sinkOk = await userSinkInterrupts(say);
      const after = stopped();
      if (after !== null) return after;
      if (!sinkOk) {
        throw new Error(
          "demo failed: the user-space interrupt path misbehaved",
        );
      }
      return EXIT.OK;
    } catch (e) {
      const status = stopped();
      if (status !== null) return status;
      throw e;
    }
  },
};
