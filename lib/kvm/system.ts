// The KVM system fd (/dev/kvm): whether this machine can open it and why
// not, capability queries and VM creation.

import {
  closeFd,
  ioctlValue,
  O_CLOEXEC,
  O_RDWR,
  openPath,
  OwnedFd,
  readFd,
  SysError,
} from "../../ffi/mod.ts";
import { KVM_IOCTL } from "./layout.ts";
import { Vm } from "./vm.ts";

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
export class Kvm extends OwnedFd {
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
}
