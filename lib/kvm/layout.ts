// The KVM ABI iohub speaks, as data: kernel struct layouts (x86_64), ioctl
// request numbers, capabilities and exit reasons, one place each.

import { io, ior, iow } from "../../ffi/mod.ts";

/** The ioctl type of every KVM request (KVMIO in <linux/kvm.h>). */
const KVMIO = 0xae;

/**
 * Sizes and offsets of the kernel structs iohub passes to KVM (x86_64), one
 * place each; tests/kvm/kvm_layout.c prints the kernel headers' values and
 * tests/kvm/kvm_test.ts compares them with these.
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

/** KVM_IRQFD flag: detach the irqfd from its GSI. */
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

/** kvm_run.io.direction: the guest writes the port. */
export const KVM_EXIT_IO_OUT = 1;
