// A vcpu fd and its mmap'd kvm_run area: KVM_RUN on this thread or on a
// worker thread, the exit's details read from kvm_run, registers and LAPIC.

import {
  ioctlAsync,
  ioctlBuffer,
  ioctlValueRestarting,
  type Mapping,
  OwnedFd,
} from "../../ffi/mod.ts";
import {
  exitName,
  KVM_EXIT_IO_OUT,
  KVM_IOCTL,
  KVM_STRUCT as S,
  KvmExit,
} from "./layout.ts";
import { KvmRegs, KvmSregs } from "./regs.ts";

/**
 * A vcpu fd and its mmap'd kvm_run area. run()/runAsync() enter the guest
 * and return the exit reason; the exit's details are read from kvm_run
 * through the accessors below without allocating per exit.
 */
export class Vcpu extends OwnedFd {
  readonly #run: Mapping;
  readonly #view: DataView;
  #running = false;
  // Views into kvm_run's data area for port I/O, cached by (offset, size)
  // because the kernel uses the same offset for every exit.
  #ioOffset = -1;
  readonly #ioViews: (Uint8Array | undefined)[] = [];
  readonly #mmioData: Uint8Array[];

  /** Use Vm.createVcpu(); takes ownership of `fd` and `run`. */
  constructor(fd: number, run: Mapping) {
    super(fd);
    this.#run = run;
    this.#view = new DataView(run.bytes.buffer);
    this.#mmioData = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) =>
      run.bytes.subarray(S.run.mmioData, S.run.mmioData + n)
    );
  }

  /** True while a runAsync() call is inside KVM_RUN on a worker thread. */
  get running(): boolean {
    return this.#running;
  }

  /** KVM_RUN on this thread: blocks until the next exit to user space. */
  run(): number {
    ioctlValueRestarting(this.fd, KVM_IOCTL.KVM_RUN, 0, "KVM_RUN");
    return this.exitReason;
  }

  /**
   * KVM_RUN on a worker thread, so the JS event loop keeps running while
   * the guest halts waiting for an interrupt. Never call other vcpu ioctls
   * while it is pending: the kernel serialises them behind KVM_RUN.
   */
  async runAsync(): Promise<number> {
    const fd = this.fd;
    if (this.#running) throw new Error("KVM_RUN: this vcpu is already running");
    this.#running = true;
    try {
      for (;;) {
        const r = await ioctlAsync(fd, KVM_IOCTL.KVM_RUN, 0);
        if (r === 0) return this.exitReason;
        // Signals (e.g. SIGCHLD on the worker) end KVM_RUN with EINTR and
        // exit reason INTR: re-enter. errno lives on the worker thread, so
        // other failures are reported by exit reason.
        if (this.exitReason === KvmExit.INTR) continue;
        throw new Error(
          `KVM_RUN failed on the worker thread (exit reason ${
            exitName(this.exitReason)
          })`,
        );
      }
    } finally {
      this.#running = false;
    }
  }

  /** kvm_run.exit_reason of the last exit. */
  get exitReason(): number {
    return this.#view.getUint32(S.run.exitReason, true);
  }

  /** KVM_EXIT_IO: true for `out` (guest writes), false for `in`. */
  get ioIsWrite(): boolean {
    return this.#view.getUint8(S.run.ioDirection) === KVM_EXIT_IO_OUT;
  }

  /** KVM_EXIT_IO: access width in bytes (1, 2 or 4). */
  get ioSize(): number {
    return this.#view.getUint8(S.run.ioSize);
  }

  /** KVM_EXIT_IO: the port. */
  get ioPort(): number {
    return this.#view.getUint16(S.run.ioPort, true);
  }

  /** KVM_EXIT_IO: number of accesses (more than 1 for rep ins/outs). */
  get ioCount(): number {
    return this.#view.getUint32(S.run.ioCount, true);
  }

  /**
   * KVM_EXIT_IO: access `i`'s bytes inside kvm_run (what an `out` wrote, or
   * where an `in` result goes). Valid until the next run.
   */
  ioData(i = 0): Uint8Array {
    const off = Number(this.#view.getBigUint64(S.run.ioDataOffset, true));
    const size = this.ioSize;
    if (i === 0 && off === this.#ioOffset) {
      const cached = this.#ioViews[size];
      if (cached !== undefined) return cached;
    }
    const view = this.#run.bytes.subarray(off + i * size, off + (i + 1) * size);
    if (i === 0) {
      if (off !== this.#ioOffset) this.#ioViews.length = 0;
      this.#ioOffset = off;
      this.#ioViews[size] = view;
    }
    return view;
  }

  /** KVM_EXIT_MMIO: the guest-physical address. */
  get mmioPhysAddr(): bigint {
    return this.#view.getBigUint64(S.run.mmioPhysAddr, true);
  }

  /** KVM_EXIT_MMIO: access width in bytes (1-8). */
  get mmioLen(): number {
    return this.#view.getUint32(S.run.mmioLen, true);
  }

  /** KVM_EXIT_MMIO: true for a write. */
  get mmioIsWrite(): boolean {
    return this.#view.getUint8(S.run.mmioIsWrite) !== 0;
  }

  /** KVM_EXIT_MMIO: the access's bytes in kvm_run (fill them for a read). */
  get mmioData(): Uint8Array {
    return this.#mmioData[Math.min(this.mmioLen, 8)];
  }

  /** kvm_run.immediate_exit: when set, KVM_RUN returns at once (EINTR). */
  set immediateExit(on: boolean) {
    this.#view.setUint8(S.run.immediateExit, on ? 1 : 0);
  }

  /** KVM_GET_REGS. */
  getRegs(regs: KvmRegs = new KvmRegs()): KvmRegs {
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_GET_REGS, regs.bytes, "KVM_GET_REGS");
    return regs;
  }

  /** KVM_SET_REGS. */
  setRegs(regs: KvmRegs): void {
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_SET_REGS, regs.bytes, "KVM_SET_REGS");
  }

  /** KVM_GET_SREGS. */
  getSregs(sregs: KvmSregs = new KvmSregs()): KvmSregs {
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_GET_SREGS, sregs.bytes, "KVM_GET_SREGS");
    return sregs;
  }

  /** KVM_SET_SREGS. */
  setSregs(sregs: KvmSregs): void {
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_SET_SREGS, sregs.bytes, "KVM_SET_SREGS");
  }

  /** KVM_GET_LAPIC: the in-kernel LAPIC's register page (1 KiB). */
  getLapic(page: Uint8Array = new Uint8Array(S.lapicState.size)): Uint8Array {
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_GET_LAPIC, page, "KVM_GET_LAPIC");
    return page;
  }

  /** KVM_SET_LAPIC: loads the LAPIC's register page. */
  setLapic(page: Uint8Array): void {
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_SET_LAPIC, page, "KVM_SET_LAPIC");
  }

  /**
   * Unmaps kvm_run and closes the fd once. Refused while runAsync() is
   * pending: the worker thread still uses both.
   */
  override close(): void {
    if (this.closed) return;
    if (this.#running) {
      throw new Error("KVM vcpu: close() while KVM_RUN is in progress");
    }
    try {
      this.#run.unmap();
    } finally {
      super.close();
    }
  }
}
