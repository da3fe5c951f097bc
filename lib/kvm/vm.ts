// A KVM VM fd: guest memory slots, the in-kernel irqchip, irqfds (typed
// eventfds, as rust-vmm's kvm-ioctls takes them), MSIs and vcpu creation.

import {
  closeFd,
  type EventFd,
  ioctlBuffer,
  ioctlValue,
  MAP_SHARED,
  type Mapping,
  mmap,
  OwnedFd,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/mod.ts";
import {
  KVM_IOCTL,
  KVM_IRQFD_FLAG_DEASSIGN,
  KVM_IRQFD_FLAG_RESAMPLE,
  KVM_STRUCT as S,
} from "./layout.ts";
import { u64 } from "./regs.ts";
import { Vcpu } from "./vcpu.ts";

/** A VM fd: memory slots, the in-kernel irqchip, irqfds and vcpus. */
export class Vm extends OwnedFd {
  readonly #mmapSize: number;
  // Scratch struct reused by every KVM_IRQFD: no allocation per ioctl.
  readonly #irqfd = new Uint8Array(S.irqfd.size);
  readonly #irqfdView = new DataView(this.#irqfd.buffer);

  /** Use Kvm.createVm(); takes ownership of `fd`. */
  constructor(fd: number, vcpuMmapSize: number) {
    super(fd);
    this.#mmapSize = vcpuMmapSize;
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

  /** KVM_IRQFD: each signal of `irqfd` injects an edge on `gsi`. */
  registerIrqfd(irqfd: EventFd, gsi: number): void {
    this.#irqfdCall(irqfd.fd, gsi, 0, 0);
  }

  /**
   * KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE: a signal of `irqfd` raises `gsi`
   * as a level; when the guest's EOI lowers it, KVM signals `resamplefd` so
   * the device side can re-assert if its level is still high.
   */
  registerIrqfdWithResample(
    irqfd: EventFd,
    resamplefd: EventFd,
    gsi: number,
  ): void {
    this.#irqfdCall(
      irqfd.fd,
      gsi,
      KVM_IRQFD_FLAG_RESAMPLE,
      resamplefd.fd,
    );
  }

  /** KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN: detaches `irqfd` from `gsi`. */
  unregisterIrqfd(irqfd: EventFd, gsi: number): void {
    this.#irqfdCall(irqfd.fd, gsi, KVM_IRQFD_FLAG_DEASSIGN, 0);
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
}
