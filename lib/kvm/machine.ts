// A small KVM machine for tiny real-mode guests: memfd-backed RAM at gpa 0
// (shareable with a remote through SYNC_SYSMEM), the in-kernel irqchip, one
// vcpu starting at 0x1000 in real mode. KVM_RUN runs on a worker thread so
// the JS event loop (remote processes, eventfds, timers) keeps going while
// the guest halts; port I/O and MMIO exits go to the caller's handlers.
//
// Harness ports: the guest reports to the harness through port I/O on
// 0xf0-0xff, which never reaches the caller's handlers:
//   0xf0 REPORT: a value for RunOptions.onReport
//   0xf2 READY:  the guest is set up to take interrupts (RunOptions.onReady)
//   0xf4 DONE:   the run ends with status "done" and the written value
//   0xf8 FAIL:   the run rejects with GuestFailure carrying the value
//   0xfc KICK:   the guest's NMI handler ran (see below)
// Other ports in the range are reserved and fail the run.
//
// No hang: with the in-kernel irqchip HLT never exits to user space, so a
// guest waiting for an interrupt that never comes would block KVM_RUN
// forever. On the deadline (or stop()) the harness sends the vcpu an NMI
// with KVM_SIGNAL_MSI from the JS thread; NMIs ignore IF and the PIC mask,
// and the guest's NMI handler writes the KICK port, which exits KVM_RUN.
// The run then rejects with HarnessTimeout (or resolves "stopped"), and
// nothing stays running, so close() releases every fd.

import {
  MAP_SHARED,
  type Mapping,
  memfd,
  mmap,
  OwnedFd,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/mod.ts";
import {
  exitName,
  Kvm,
  KvmCap,
  KvmExit,
  KvmRegs,
  KvmSregs,
  type Vcpu,
  type Vm,
} from "./mod.ts";
import { getLe } from "../le.ts";
import type { SysmemRegion } from "../mpqemu/mod.ts";

/** Ports the guest uses to talk to the harness (see module comment). */
export const HarnessPort = {
  /** out: a value for onReport. */
  REPORT: 0xf0,
  /** out: the guest can take interrupts now (onReady). */
  READY: 0xf2,
  /** out: the run is done; the value is the run's result. */
  DONE: 0xf4,
  /** out: the guest failed; the value is its reason code. */
  FAIL: 0xf8,
  /** out: the guest's NMI handler ran (deadline or stop()). */
  KICK: 0xfc,
} as const;

/** First port of the harness range. */
const HARNESS_PORT_FIRST = 0xf0;
/** Last port of the harness range. */
const HARNESS_PORT_LAST = 0xff;

/** Where guests are loaded and start (CS base 0, IP here). */
export const GUEST_LOAD_ADDRESS = 0x1000;
/** Initial SP (SS base 0); guests keep code and data below it. */
export const GUEST_STACK_TOP = 0x8000;
/** Default guest RAM: one 64 KiB slot at gpa 0. */
export const DEFAULT_MEM_SIZE = 0x10000;

// MSI to the LAPIC with ID 0 (physical destination), delivery mode NMI.
const MSI_ADDRESS_APIC0 = 0xfee00000n;
const MSI_DATA_NMI = 4 << 8;
// The LAPIC's spurious-interrupt vector register in its page.
const APIC_SVR = 0xf0;
// After the deadline's NMI, how long the guest gets to reach its KICK out.
const KICK_GRACE_MS = 2000;

/** The guest wrote the FAIL port. */
export class GuestFailure extends Error {
  /** The guest's reason code. */
  readonly code: number;

  /** Builds the error for reason `code`. */
  constructor(code: number, detail: string) {
    super(`guest failed with code ${code}: ${detail}`);
    this.name = "GuestFailure";
    this.code = code;
  }
}

/** The guest did not finish before the deadline (it was kicked out). */
export class HarnessTimeout extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "HarnessTimeout";
  }
}

/**
 * Port I/O exit: `data` holds what an `out` wrote, or is filled by the
 * handler for an `in`. Returns false when no device claims the port.
 */
export type IoHandler = (
  port: number,
  size: number,
  isWrite: boolean,
  data: Uint8Array,
) => boolean;

/** MMIO exit, like IoHandler; false when nothing claims the address. */
export type MmioHandler = (
  addr: bigint,
  isWrite: boolean,
  data: Uint8Array,
) => boolean;

/** What one run() does with the guest's exits. */
export interface RunOptions {
  /** Port I/O outside the harness range (unset: every access fails). */
  onIo?: IoHandler;
  /** MMIO outside guest RAM (unset: every access fails). */
  onMmio?: MmioHandler;
  /** Each REPORT value, as it arrives. */
  onReport?: (value: number) => void;
  /**
   * The guest wrote READY: it is set up to take interrupts. Raising one
   * earlier can be lost to the PIC's initialisation.
   */
  onReady?: (value: number) => void;
  /** Deadline: after it the guest is kicked out and the run rejects. */
  timeoutMs: number;
}

/** How a run ended. */
export interface RunResult {
  /** "done": the guest wrote DONE; "stopped": stop() ended it. */
  status: "done" | "stopped";
  /** The DONE value (0 when stopped). */
  value: number;
  /** Exits to user space during the run. */
  exits: number;
  /** Wall time of the run in milliseconds. */
  elapsedMs: number;
}

/** Options of KvmMachine.create. */
export interface MachineOptions {
  /** The flat binary loaded at GUEST_LOAD_ADDRESS. */
  program: Uint8Array;
  /** RAM size in bytes (default 64 KiB). */
  memSize?: number;
}

/**
 * One VM with RAM, the in-kernel irqchip and a real-mode vcpu.
 *
 * @example
 * ```ts
 * using m = KvmMachine.create({ program: bytes });
 * const r = await m.run({ timeoutMs: 1000, onIo: () => false });
 * ```
 */
export class KvmMachine implements Disposable {
  /** The /dev/kvm handle. */
  readonly kvm: Kvm;
  /** The VM (register irqfds on it). */
  readonly vm: Vm;
  /** The one vcpu. */
  readonly vcpu: Vcpu;
  /** RAM size in bytes. */
  readonly memSize: number;
  readonly #memfd: OwnedFd;
  readonly #ram: Mapping;
  #closed = false;
  #stopRequested = false;
  #timedOut = false;
  #kicks = 0;

  private constructor(
    kvm: Kvm,
    vm: Vm,
    vcpu: Vcpu,
    memfd: OwnedFd,
    ram: Mapping,
  ) {
    this.kvm = kvm;
    this.vm = vm;
    this.vcpu = vcpu;
    this.#memfd = memfd;
    this.memSize = ram.length;
    this.#ram = ram;
  }

  /**
   * Creates the VM: RAM as slot 0 at gpa 0, the in-kernel irqchip, vcpu 0
   * in real mode (CS = DS = ES = SS = 0) at GUEST_LOAD_ADDRESS with SP at
   * GUEST_STACK_TOP and interrupts off, and `program` loaded.
   */
  static create(opts: MachineOptions): KvmMachine {
    const memSize = opts.memSize ?? DEFAULT_MEM_SIZE;
    if (GUEST_LOAD_ADDRESS + opts.program.length > GUEST_STACK_TOP - 0x100) {
      throw new Error(
        `guest program of ${opts.program.length} bytes does not fit below the stack`,
      );
    }
    // Each step's resources go on a stack so a failure releases them all.
    const undo: (() => void)[] = [];
    try {
      const kvm = Kvm.open();
      undo.push(() => kvm.close());
      for (const cap of [KvmCap.IRQCHIP, KvmCap.SIGNAL_MSI]) {
        if (kvm.checkExtension(cap) === 0) {
          throw new Error(`KVM lacks capability ${cap}`);
        }
      }
      const vm = kvm.createVm();
      undo.push(() => vm.close());
      const fd = new OwnedFd(memfd("iohub-guest-ram", memSize));
      undo.push(() => fd.close());
      const ram = mmap(memSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd);
      undo.push(() => ram.unmap());
      vm.setUserMemoryRegion(0, 0, ram, memSize);
      vm.createIrqchip();
      const vcpu = vm.createVcpu(0);
      undo.push(() => vcpu.close());

      const sregs = vcpu.getSregs(new KvmSregs());
      sregs.setRealModeSegment("cs", 0, true);
      for (const s of ["ds", "es", "fs", "gs", "ss"] as const) {
        sregs.setRealModeSegment(s, 0);
      }
      vcpu.setSregs(sregs);
      const regs = new KvmRegs();
      regs.set("rip", GUEST_LOAD_ADDRESS);
      regs.set("rsp", GUEST_STACK_TOP);
      regs.set("rflags", 0x2); // bit 1 is reserved-one; IF clear.
      vcpu.setRegs(regs);
      // Software-enable the LAPIC (SVR bit 8, spurious vector 0xff): KVM
      // does not deliver the watchdog NMI to a LAPIC still disabled as at
      // reset (KVM_SIGNAL_MSI reaches 0 vcpus). LVT0 stays ExtINT, so the
      // PIC's interrupts still come through.
      const lapic = vcpu.getLapic();
      new DataView(lapic.buffer).setUint32(APIC_SVR, 0x1ff, true);
      vcpu.setLapic(lapic);
      ram.bytes.set(opts.program, GUEST_LOAD_ADDRESS);
      return new KvmMachine(kvm, vm, vcpu, fd, ram);
    } catch (e) {
      for (const f of undo.reverse()) f();
      throw e;
    }
  }

  /** The memfd backing guest RAM (owned here; share it with SYNC_SYSMEM). */
  get memfd(): number {
    return this.#memfd.fd;
  }

  /** Guest RAM as bytes (valid until close()). */
  get memory(): Uint8Array {
    return this.#ram.bytes;
  }

  /** Copies `bytes` into guest RAM at `gpa`. */
  write(gpa: number, bytes: Uint8Array): void {
    this.#ram.bytes.set(bytes, gpa);
  }

  /** A copy of `len` bytes of guest RAM at `gpa`. */
  read(gpa: number, len: number): Uint8Array {
    return this.#ram.bytes.slice(gpa, gpa + len);
  }

  /** The guest RAM as one SYNC_SYSMEM region (the fd stays ours). */
  sysmemRegion(): SysmemRegion {
    return {
      fd: this.memfd,
      gpa: 0n,
      size: BigInt(this.memSize),
      offset: 0n,
    };
  }

  /** NMIs sent to the guest so far (deadlines and stops). */
  get kicks(): number {
    return this.#kicks;
  }

  #kick(): void {
    this.#kicks++;
    this.vm.signalMsi(MSI_ADDRESS_APIC0, MSI_DATA_NMI);
  }

  /**
   * Ends the current run: the guest gets an NMI and the run resolves with
   * status "stopped" when its handler reports. Safe from exit handlers.
   */
  stop(): void {
    this.#stopRequested = true;
    this.#kick();
  }

  /**
   * Runs the guest until it writes DONE (resolves "done"), stop() ends it
   * (resolves "stopped"), it writes FAIL (rejects GuestFailure), the
   * deadline passes (rejects HarnessTimeout) or an exit is not handled.
   * A later run resumes the guest where it left off.
   */
  async run(opts: RunOptions): Promise<RunResult> {
    if (this.#closed) throw new Error("KvmMachine: closed");
    const vcpu = this.vcpu;
    const start = performance.now();
    let exits = 0;
    this.#stopRequested = false;
    this.#timedOut = false;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    let rejectStuck: (e: Error) => void = () => {};
    const stuck = new Promise<never>((_, reject) => {
      rejectStuck = reject;
    });
    // Keep the never-settling branch from counting as unhandled.
    stuck.catch(() => {});
    const deadline = setTimeout(() => {
      this.#timedOut = true;
      this.#kick();
      graceTimer = setTimeout(() => {
        rejectStuck(
          new HarnessTimeout(
            `guest did not finish within ${opts.timeoutMs} ms and did not ` +
              `answer the watchdog NMI within ${KICK_GRACE_MS} ms; the vcpu ` +
              `thread stays in KVM_RUN`,
          ),
        );
      }, KICK_GRACE_MS);
    }, opts.timeoutMs);
    try {
      for (;;) {
        const reason = await Promise.race([vcpu.runAsync(), stuck]);
        exits++;
        if (reason === KvmExit.IO) {
          const port = vcpu.ioPort;
          if (port >= HARNESS_PORT_FIRST && port <= HARNESS_PORT_LAST) {
            const value = getLe(vcpu.ioData());
            const end = this.#harnessPort(port, value, opts, exits, start);
            if (end !== null) return end;
            continue;
          }
          const onIo = opts.onIo;
          const size = vcpu.ioSize;
          const isWrite = vcpu.ioIsWrite;
          const count = vcpu.ioCount;
          for (let i = 0; i < count; i++) {
            const data = vcpu.ioData(i);
            if (onIo === undefined || !onIo(port, size, isWrite, data)) {
              throw new GuestFailure(
                -1,
                `unclaimed port ${isWrite ? "write" : "read"} 0x${
                  port.toString(16)
                } (${size} bytes)`,
              );
            }
          }
        } else if (reason === KvmExit.MMIO) {
          const addr = vcpu.mmioPhysAddr;
          const isWrite = vcpu.mmioIsWrite;
          if (
            opts.onMmio === undefined ||
            !opts.onMmio(addr, isWrite, vcpu.mmioData)
          ) {
            throw new GuestFailure(
              -1,
              `unclaimed MMIO ${isWrite ? "write" : "read"} at 0x${
                addr.toString(16)
              } (${vcpu.mmioLen} bytes)`,
            );
          }
        } else {
          throw new GuestFailure(
            -1,
            `unexpected exit ${exitName(reason)} at ${this.#where()}`,
          );
        }
      }
    } finally {
      clearTimeout(deadline);
      clearTimeout(graceTimer);
    }
  }

  #harnessPort(
    port: number,
    value: number,
    opts: RunOptions,
    exits: number,
    start: number,
  ): RunResult | null {
    const result = (status: RunResult["status"], v: number): RunResult => ({
      status,
      value: v,
      exits,
      elapsedMs: performance.now() - start,
    });
    switch (port) {
      case HarnessPort.REPORT:
        opts.onReport?.(value);
        return null;
      case HarnessPort.READY:
        opts.onReady?.(value);
        return null;
      case HarnessPort.DONE:
        return result("done", value);
      case HarnessPort.FAIL:
        throw new GuestFailure(value, `at ${this.#where()}`);
      case HarnessPort.KICK:
        if (this.#timedOut) {
          throw new HarnessTimeout(
            `guest did not finish within ${opts.timeoutMs} ms ` +
              `(${exits} exits; kicked out by the watchdog NMI)`,
          );
        }
        if (this.#stopRequested) return result("stopped", 0);
        return null;
      default:
        throw new GuestFailure(
          -1,
          `write to reserved harness port 0x${port.toString(16)}`,
        );
    }
  }

  #where(): string {
    try {
      const r = this.vcpu.getRegs();
      return `ip 0x${r.get("rip").toString(16)}`;
    } catch {
      return "unknown ip";
    }
  }

  /**
   * Closes the vcpu, unmaps RAM and closes the memfd, VM and /dev/kvm;
   * idempotent. Refused while a run is in progress.
   */
  close(): void {
    if (this.#closed) return;
    if (this.vcpu.running) {
      throw new Error("KvmMachine: close() while the guest is running");
    }
    this.#closed = true;
    try {
      this.vcpu.close();
    } finally {
      try {
        this.vm.close();
        this.#ram.unmap();
      } finally {
        this.#memfd.close();
        this.kvm.close();
      }
    }
  }

  /** Closes (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
