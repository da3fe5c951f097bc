// Typed wrappers over /dev/kvm in the style of rust-vmm's kvm-ioctls: a Kvm
// (the system fd), its Vm (memory slots, in-kernel irqchip, irqfds) and Vcpus
// (the mmap'd kvm_run area, KVM_RUN, registers). The proxy registers its
// irqfd/resamplefd pair through Vm; lib/kvm_harness.ts runs tiny guests.

import {
  check,
  closeFd,
  Errno,
  io,
  ioctlBuffer,
  ioctlValue,
  ior,
  iow,
  MAP_SHARED,
  type Mapping,
  mmap,
  O_CLOEXEC,
  O_RDWR,
  openPath,
  PROT_READ,
  PROT_WRITE,
  readFd,
  SysError,
} from "../../ffi/mod.ts";
import { libc } from "../../ffi/libc.ts";

/** The ioctl type of every KVM request (KVMIO in <linux/kvm.h>). */
export const KVMIO = 0xae;

/**
 * Sizes and offsets of the kernel structs iohub passes to KVM (x86_64), one
 * place each; tests/kvm_layout.c prints the kernel headers' values and
 * tests/kvm_test.ts compares them with these.
 */
export const KVM_STRUCT = {
  /** struct kvm_lapic_state: the LAPIC's 1 KiB register page. */
  lapicState: { size: 1024 },
  /** struct kvm_userspace_memory_region. */
  userspaceMemoryRegion: {
    size: 32,
    slot: 0,
    flags: 4,
    guestPhysAddr: 8,
    memorySize: 16,
    userspaceAddr: 24,
  },
  /** struct kvm_irqfd. */
  irqfd: { size: 32, fd: 0, gsi: 4, flags: 8, resamplefd: 12 },
  /** struct kvm_irq_level. */
  irqLevel: { size: 8, irq: 0, level: 4 },
  /** struct kvm_msi. */
  msi: { size: 32, addressLo: 0, addressHi: 4, data: 8, flags: 12 },
  /** struct kvm_run: the members iohub reads (io and mmio exits). */
  run: {
    immediateExit: 1,
    exitReason: 8,
    ioDirection: 32,
    ioSize: 33,
    ioPort: 34,
    ioCount: 36,
    ioDataOffset: 40,
    mmioPhysAddr: 32,
    mmioData: 40,
    mmioLen: 48,
    mmioIsWrite: 52,
  },
  /** struct kvm_regs: 18 u64 registers in this order. */
  regs: { size: 144, rsp: 48, rip: 128, rflags: 136 },
  /** struct kvm_segment. */
  segment: {
    size: 24,
    base: 0,
    limit: 8,
    selector: 12,
    type: 14,
    present: 15,
    dpl: 16,
    db: 17,
    s: 18,
    l: 19,
    g: 20,
    avl: 21,
  },
  /** struct kvm_sregs: 8 segments, gdt/idt, control registers. */
  sregs: {
    size: 312,
    cs: 0,
    ds: 24,
    es: 48,
    fs: 72,
    gs: 96,
    ss: 120,
    tr: 144,
    ldt: 168,
    gdt: 192,
    idt: 208,
    cr0: 224,
    efer: 264,
    apicBase: 272,
  },
} as const;

const S = KVM_STRUCT;

/** KVM ioctl request numbers, derived from (dir, KVMIO, nr, size). */
export const KVM_IOCTL = {
  KVM_GET_API_VERSION: io(KVMIO, 0x00),
  KVM_CREATE_VM: io(KVMIO, 0x01),
  KVM_CHECK_EXTENSION: io(KVMIO, 0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(KVMIO, 0x04),
  KVM_CREATE_VCPU: io(KVMIO, 0x41),
  KVM_SET_USER_MEMORY_REGION: iow(
    KVMIO,
    0x46,
    S.userspaceMemoryRegion.size,
  ),
  KVM_CREATE_IRQCHIP: io(KVMIO, 0x60),
  KVM_IRQ_LINE: iow(KVMIO, 0x61, S.irqLevel.size),
  KVM_IRQFD: iow(KVMIO, 0x76, S.irqfd.size),
  KVM_RUN: io(KVMIO, 0x80),
  KVM_GET_REGS: ior(KVMIO, 0x81, S.regs.size),
  KVM_SET_REGS: iow(KVMIO, 0x82, S.regs.size),
  KVM_GET_SREGS: ior(KVMIO, 0x83, S.sregs.size),
  KVM_SET_SREGS: iow(KVMIO, 0x84, S.sregs.size),
  KVM_GET_LAPIC: ior(KVMIO, 0x8e, S.lapicState.size),
  KVM_SET_LAPIC: iow(KVMIO, 0x8f, S.lapicState.size),
  KVM_SIGNAL_MSI: iow(KVMIO, 0xa5, S.msi.size),
} as const;

/** The API version every supported kernel reports (KVM_API_VERSION). */
export const KVM_API_VERSION = 12;

/** Capabilities iohub checks with KVM_CHECK_EXTENSION. */
export const KvmCap = {
  /** In-kernel PIC/IOAPIC/LAPIC. */
  IRQCHIP: 0,
  /** KVM_IRQFD. */
  IRQFD: 32,
  /** KVM_SIGNAL_MSI (the harness's watchdog NMI). */
  SIGNAL_MSI: 77,
  /** KVM_IRQFD_FLAG_RESAMPLE (level-triggered irqfds). */
  IRQFD_RESAMPLE: 82,
} as const;

/** KVM_IRQFD flags. */
export const KVM_IRQFD_FLAG_DEASSIGN = 1;
/** KVM_IRQFD flag: level-triggered with a resamplefd signalled at EOI. */
export const KVM_IRQFD_FLAG_RESAMPLE = 2;

/** kvm_run.exit_reason values iohub handles. */
export const KvmExit = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
} as const;

/** The name of an exit reason, e.g. "IO", for messages. */
export function exitName(reason: number): string {
  for (const [k, v] of Object.entries(KvmExit)) if (v === reason) return k;
  return `#${reason}`;
}

/** kvm_run.io.direction: the guest reads the port. */
export const KVM_EXIT_IO_IN = 0;
/** kvm_run.io.direction: the guest writes the port. */
export const KVM_EXIT_IO_OUT = 1;

function u64(v: number | bigint): bigint {
  return typeof v === "bigint" ? v : BigInt(v);
}

/**
 * Whether the running kernel registered the KVM misc device (a `kvm` line in
 * /proc/misc). When it did not, no /dev/kvm can work on this machine: the
 * kernel lacks KVM, or refused to bind it (a PVM guest kernel, a VM without
 * nested virtualisation). Null when /proc/misc cannot be read.
 */
export function kernelHasKvmDevice(): boolean | null {
  // Through libc: Deno's permission model wants --allow-all for /proc.
  let misc = "";
  try {
    const fd = openPath("/proc/misc", O_CLOEXEC);
    try {
      const buf = new Uint8Array(4096);
      const dec = new TextDecoder();
      for (let n; (n = readFd(fd, buf)) > 0;) {
        misc += dec.decode(buf.subarray(0, n), { stream: true });
      }
    } finally {
      closeFd(fd);
    }
  } catch {
    return null;
  }
  return misc.split("\n").some((line) => line.trim().split(/\s+/)[1] === "kvm");
}

/** Why /dev/kvm cannot be opened here (the open error, with its hint), or null. */
export function kvmUnavailableReason(path = "/dev/kvm"): string | null {
  try {
    Kvm.open(path).close();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

// What to do about the usual reasons /dev/kvm does not open.
function openHint(code: string, path: string): string | undefined {
  if (code === "EACCES") return "add your user to group kvm, or run as root";
  if (code !== "ENOENT") return undefined;
  if (kernelHasKvmDevice() === false) {
    return "this kernel offers no KVM (no 'kvm' in /proc/misc): load " +
      "kvm_intel/kvm_amd, or run on a host with (nested) virtualisation";
  }
  return `the kernel has KVM but ${path} is missing: create it with ` +
    "'mknod /dev/kvm c 10 232' or pass it into the container";
}

/**
 * The system fd (/dev/kvm): capability queries and VM creation.
 *
 * @example
 * ```ts
 * using kvm = Kvm.open();
 * using vm = kvm.createVm();
 * vm.createIrqchip();
 * ```
 */
export class Kvm implements Disposable {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Opens `path` read-write. EACCES and ENOENT carry a hint on what to fix,
   * e.g. "open /dev/kvm: EACCES (add your user to group kvm)".
   */
  static open(path = "/dev/kvm"): Kvm {
    try {
      return new Kvm(openPath(path, O_RDWR));
    } catch (e) {
      const hint = e instanceof SysError ? openHint(e.code, path) : undefined;
      if (hint === undefined) throw e;
      throw new SysError(`open ${path}`, (e as SysError).errno, hint);
    }
  }

  /** The fd (throws once closed). */
  get fd(): number {
    if (this.#fd < 0) throw new SysError("KVM (closed)", Errno.EBADF);
    return this.#fd;
  }

  /** KVM_GET_API_VERSION: 12 on every kernel iohub supports. */
  apiVersion(): number {
    return ioctlValue(
      this.fd,
      KVM_IOCTL.KVM_GET_API_VERSION,
      0,
      "KVM_GET_API_VERSION",
    );
  }

  /** KVM_CHECK_EXTENSION: 0 when `cap` is missing, else its value. */
  checkExtension(cap: number): number {
    return ioctlValue(
      this.fd,
      KVM_IOCTL.KVM_CHECK_EXTENSION,
      cap,
      "KVM_CHECK_EXTENSION",
    );
  }

  /** KVM_GET_VCPU_MMAP_SIZE: bytes to map of each vcpu fd (kvm_run + data). */
  vcpuMmapSize(): number {
    return ioctlValue(
      this.fd,
      KVM_IOCTL.KVM_GET_VCPU_MMAP_SIZE,
      0,
      "KVM_GET_VCPU_MMAP_SIZE",
    );
  }

  /** KVM_CREATE_VM (machine type 0); the caller owns the Vm. */
  createVm(): Vm {
    const mmapSize = this.vcpuMmapSize();
    const fd = ioctlValue(this.fd, KVM_IOCTL.KVM_CREATE_VM, 0, "KVM_CREATE_VM");
    return new Vm(fd, mmapSize);
  }

  /** Closes the fd once; VMs created from it stay usable. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeFd(fd);
  }

  /** Closes (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A VM fd: memory slots, the in-kernel irqchip, irqfds and vcpus. */
export class Vm implements Disposable {
  #fd: number;
  readonly #mmapSize: number;
  // Scratch structs reused by every call: no allocation per ioctl.
  readonly #irqfd = new Uint8Array(S.irqfd.size);
  readonly #irqfdView = new DataView(this.#irqfd.buffer);
  readonly #level = new Uint8Array(S.irqLevel.size);
  readonly #levelView = new DataView(this.#level.buffer);

  /** Use Kvm.createVm(); takes ownership of `fd`. */
  constructor(fd: number, vcpuMmapSize: number) {
    this.#fd = fd;
    this.#mmapSize = vcpuMmapSize;
  }

  /** The fd (throws once closed). */
  get fd(): number {
    if (this.#fd < 0) throw new SysError("KVM VM (closed)", Errno.EBADF);
    return this.#fd;
  }

  /** KVM_CREATE_IRQCHIP: PIC, IOAPIC and a LAPIC per vcpu, in the kernel. */
  createIrqchip(): void {
    ioctlValue(this.fd, KVM_IOCTL.KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
  }

  /**
   * KVM_SET_USER_MEMORY_REGION: maps `size` bytes of this process at `host`
   * (a Mapping or an address) as guest-physical `gpa` in `slot`; size 0
   * deletes the slot. The host memory must stay mapped while the slot is.
   */
  setUserMemoryRegion(
    slot: number,
    gpa: number | bigint,
    host: Mapping | bigint,
    size: number | bigint,
  ): void {
    const r = S.userspaceMemoryRegion;
    const buf = new Uint8Array(r.size);
    const v = new DataView(buf.buffer);
    v.setUint32(r.slot, slot, true);
    v.setUint32(r.flags, 0, true);
    v.setBigUint64(r.guestPhysAddr, u64(gpa), true);
    v.setBigUint64(r.memorySize, u64(size), true);
    v.setBigUint64(
      r.userspaceAddr,
      typeof host === "bigint" ? host : host.address,
      true,
    );
    ioctlBuffer(
      this.fd,
      KVM_IOCTL.KVM_SET_USER_MEMORY_REGION,
      buf,
      "KVM_SET_USER_MEMORY_REGION",
    );
  }

  #irqfdCall(fd: number, gsi: number, flags: number, resamplefd: number): void {
    const f = S.irqfd;
    const v = this.#irqfdView;
    this.#irqfd.fill(0);
    v.setUint32(f.fd, fd, true);
    v.setUint32(f.gsi, gsi, true);
    v.setUint32(f.flags, flags, true);
    v.setUint32(f.resamplefd, resamplefd, true);
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_IRQFD, this.#irqfd, "KVM_IRQFD");
  }

  /** KVM_IRQFD: each write to eventfd `fd` injects an edge on `gsi`. */
  registerIrqfd(fd: number, gsi: number): void {
    this.#irqfdCall(fd, gsi, 0, 0);
  }

  /**
   * KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE: a write to `fd` raises `gsi` as
   * a level; when the guest's EOI lowers it, KVM writes `resamplefd` so the
   * device side can re-assert if its level is still high.
   */
  registerIrqfdWithResample(
    fd: number,
    resamplefd: number,
    gsi: number,
  ): void {
    this.#irqfdCall(fd, gsi, KVM_IRQFD_FLAG_RESAMPLE, resamplefd);
  }

  /** KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN: detaches `fd` from `gsi`. */
  unregisterIrqfd(fd: number, gsi: number): void {
    this.#irqfdCall(fd, gsi, KVM_IRQFD_FLAG_DEASSIGN, 0);
  }

  /** KVM_IRQ_LINE: sets the level of `irq` (a GSI) to high or low. */
  irqLine(irq: number, level: boolean | number): void {
    const l = S.irqLevel;
    this.#levelView.setUint32(l.irq, irq, true);
    this.#levelView.setUint32(l.level, level ? 1 : 0, true);
    ioctlBuffer(this.fd, KVM_IOCTL.KVM_IRQ_LINE, this.#level, "KVM_IRQ_LINE");
  }

  /**
   * KVM_SIGNAL_MSI: delivers an MSI (`address`, `data`) to the in-kernel
   * LAPICs; returns the number of vcpus it reached (0: blocked/ignored).
   */
  signalMsi(address: bigint, data: number): number {
    const m = S.msi;
    const buf = new Uint8Array(m.size);
    const v = new DataView(buf.buffer);
    v.setUint32(m.addressLo, Number(address & 0xffffffffn), true);
    v.setUint32(m.addressHi, Number(address >> 32n), true);
    v.setUint32(m.data, data, true);
    return ioctlBuffer(
      this.fd,
      KVM_IOCTL.KVM_SIGNAL_MSI,
      buf,
      "KVM_SIGNAL_MSI",
    );
  }

  /** KVM_CREATE_VCPU `id` and maps its kvm_run area; the caller owns it. */
  createVcpu(id: number): Vcpu {
    const fd = ioctlValue(
      this.fd,
      KVM_IOCTL.KVM_CREATE_VCPU,
      id,
      "KVM_CREATE_VCPU",
    );
    let run: Mapping;
    try {
      run = mmap(this.#mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return new Vcpu(fd, run);
  }

  /** Closes the fd once (the kernel keeps the VM while vcpus hold it). */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeFd(fd);
  }

  /** Closes (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Names of the general registers in struct kvm_regs, in order. */
export const REG_NAMES = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
] as const;

/** One general register name. */
export type RegName = typeof REG_NAMES[number];

/** struct kvm_regs as bytes with typed accessors. */
export class KvmRegs {
  /** The struct's bytes (what KVM_GET_REGS fills and KVM_SET_REGS reads). */
  readonly bytes: Uint8Array<ArrayBuffer> = new Uint8Array(S.regs.size);
  readonly #view = new DataView(this.bytes.buffer);

  /** The value of register `name`. */
  get(name: RegName): bigint {
    return this.#view.getBigUint64(8 * REG_NAMES.indexOf(name), true);
  }

  /** Sets register `name`. */
  set(name: RegName, value: number | bigint): void {
    this.#view.setBigUint64(8 * REG_NAMES.indexOf(name), u64(value), true);
  }
}

/** A segment register as struct kvm_segment describes it. */
export interface KvmSegment {
  /** Linear base address. */
  base: bigint;
  /** Limit in bytes (or pages with g). */
  limit: number;
  /** Selector value. */
  selector: number;
  /** Descriptor type (3: read/write accessed data, 0xb: code). */
  type: number;
  /** Present bit. */
  present: number;
  /** Privilege level. */
  dpl: number;
  /** Default operand size (0: 16-bit). */
  db: number;
  /** Code/data (1) or system (0). */
  s: number;
  /** 64-bit code. */
  l: number;
  /** Granularity. */
  g: number;
  /** Available bit. */
  avl: number;
}

/** The segment registers in struct kvm_sregs. */
export type SegmentName = "cs" | "ds" | "es" | "fs" | "gs" | "ss";

/** struct kvm_sregs as bytes with typed accessors for what iohub uses. */
export class KvmSregs {
  /** The struct's bytes. */
  readonly bytes: Uint8Array<ArrayBuffer> = new Uint8Array(S.sregs.size);
  readonly #view = new DataView(this.bytes.buffer);

  /** Reads segment register `name`. */
  segment(name: SegmentName): KvmSegment {
    const o = S.sregs[name];
    const g = S.segment;
    const v = this.#view;
    return {
      base: v.getBigUint64(o + g.base, true),
      limit: v.getUint32(o + g.limit, true),
      selector: v.getUint16(o + g.selector, true),
      type: v.getUint8(o + g.type),
      present: v.getUint8(o + g.present),
      dpl: v.getUint8(o + g.dpl),
      db: v.getUint8(o + g.db),
      s: v.getUint8(o + g.s),
      l: v.getUint8(o + g.l),
      g: v.getUint8(o + g.g),
      avl: v.getUint8(o + g.avl),
    };
  }

  /** Writes segment register `name`. */
  setSegment(name: SegmentName, seg: KvmSegment): void {
    const o = S.sregs[name];
    const g = S.segment;
    const v = this.#view;
    v.setBigUint64(o + g.base, seg.base, true);
    v.setUint32(o + g.limit, seg.limit, true);
    v.setUint16(o + g.selector, seg.selector, true);
    v.setUint8(o + g.type, seg.type);
    v.setUint8(o + g.present, seg.present);
    v.setUint8(o + g.dpl, seg.dpl);
    v.setUint8(o + g.db, seg.db);
    v.setUint8(o + g.s, seg.s);
    v.setUint8(o + g.l, seg.l);
    v.setUint8(o + g.g, seg.g);
    v.setUint8(o + g.avl, seg.avl);
  }

  /**
   * Sets `name` to a real-mode segment: selector `selector`, base
   * selector * 16, 64 KiB limit.
   */
  setRealModeSegment(name: SegmentName, selector: number, code = false): void {
    this.setSegment(name, {
      base: BigInt(selector) << 4n,
      limit: 0xffff,
      selector,
      type: code ? 0xb : 0x3,
      present: 1,
      dpl: 0,
      db: 0,
      s: 1,
      l: 0,
      g: 0,
      avl: 0,
    });
  }

  /** CR0. */
  get cr0(): bigint {
    return this.#view.getBigUint64(S.sregs.cr0, true);
  }

  /** Sets CR0. */
  set cr0(v: bigint) {
    this.#view.setBigUint64(S.sregs.cr0, v, true);
  }
}

/**
 * A vcpu fd and its mmap'd kvm_run area. run()/runAsync() enter the guest
 * and return the exit reason; the exit's details are read from kvm_run
 * through the accessors below without allocating per exit.
 */
export class Vcpu implements Disposable {
  #fd: number;
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
    this.#fd = fd;
    this.#run = run;
    this.#view = new DataView(run.bytes.buffer);
    this.#mmioData = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) =>
      run.bytes.subarray(S.run.mmioData, S.run.mmioData + n)
    );
  }

  /** The fd (throws once closed). */
  get fd(): number {
    if (this.#fd < 0) throw new SysError("KVM vcpu (closed)", Errno.EBADF);
    return this.#fd;
  }

  /** True while a runAsync() call is inside KVM_RUN on a worker thread. */
  get running(): boolean {
    return this.#running;
  }

  /** KVM_RUN on this thread: blocks until the next exit to user space. */
  run(): number {
    for (;;) {
      const r = libc.ioctl_val(this.fd, KVM_IOCTL.KVM_RUN, 0n);
      if (r === 0) return this.exitReason;
      // A signal for this thread interrupts the guest: just re-enter.
      if (this.exitReason === KvmExit.INTR) continue;
      check(r, "KVM_RUN");
    }
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
        const r = await libc.ioctl_async(fd, KVM_IOCTL.KVM_RUN, 0n);
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
  close(): void {
    if (this.#fd < 0) return;
    if (this.#running) {
      throw new Error("KVM vcpu: close() while KVM_RUN is in progress");
    }
    const fd = this.#fd;
    this.#fd = -1;
    try {
      this.#run.unmap();
    } finally {
      closeFd(fd);
    }
  }

  /** Closes (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
