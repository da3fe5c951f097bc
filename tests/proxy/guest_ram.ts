// Guest RAM for a test driving a remote (through our proxy, or with its own
// client): a shared memfd mapping handed over with SYNC_SYSMEM, as QEMU's
// proxy hands over the guest's memory, so the test sees what the device's
// DMA wrote.

import {
  closeFd,
  MAP_SHARED,
  type Mapping,
  memfd,
  mmap,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/mod.ts";
import type { SysmemRegion } from "../../lib/mpqemu/mod.ts";

/** Whatever sends SYNC_SYSMEM to a remote: a ProxyDevice or a Client. */
export interface SysmemSender {
  /** Sends SYNC_SYSMEM with `regions`. */
  syncSysmem(regions: SysmemRegion[]): void;
}

/**
 * `size` bytes of fresh RAM, sent to `to`'s remote as `layout` (offsets
 * into the RAM; by default all of it at guest-physical address 0); our
 * mapping of it is returned (dispose it to unmap). The memfd itself is
 * closed here: the mapping and the remote's copy keep it alive.
 */
export function guestRam(
  to: SysmemSender,
  size: number,
  layout: Omit<SysmemRegion, "fd">[] = [
    { gpa: 0n, size: BigInt(size), offset: 0n },
  ],
): Mapping {
  const fd = memfd("guest-ram", size);
  try {
    const ram = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
    try {
      to.syncSysmem(layout.map((r) => ({ ...r, fd })));
    } catch (e) {
      ram.unmap();
      throw e;
    }
    return ram;
  } finally {
    closeFd(fd);
  }
}
