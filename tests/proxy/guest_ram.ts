// Guest RAM for a test driving a remote through our proxy: a shared memfd
// mapping handed over with SYNC_SYSMEM, as QEMU's proxy hands over the
// guest's memory, so the test sees what the device's DMA wrote.

import {
  closeFd,
  MAP_SHARED,
  type Mapping,
  memfd,
  mmap,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/mod.ts";
import type { ProxyDevice } from "../../lib/proxy/proxy_device.ts";

/**
 * `size` bytes of fresh RAM at guest-physical address 0, sent to `p`'s
 * remote; our mapping of it is returned (dispose it to unmap). The memfd
 * itself is closed here: the mapping and the remote's copy keep it alive.
 */
export function guestRam(p: ProxyDevice, size: number): Mapping {
  const fd = memfd("guest-ram", size);
  try {
    const ram = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
    try {
      p.syncSysmem([{ gpa: 0n, size: BigInt(size), offset: 0n, fd }]);
    } catch (e) {
      ram.unmap();
      throw e;
    }
    return ram;
  } finally {
    closeFd(fd);
  }
}
