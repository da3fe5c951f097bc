// Guest RAM as the proxy shares it with SYNC_SYSMEM: each region is a
// shared mapping of an fd, and devices DMA through bounds-checked copies.

import {
  fileSize,
  MAP_SHARED,
  type Mapping,
  mmap,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/mod.ts";

interface Region {
  gpa: number;
  end: number;
  map: Mapping;
}

/** One region to map: `size` bytes of `fd` at `offset`, seen at `gpa`. */
export interface RegionSpec {
  /** Guest-physical address. */
  gpa: bigint;
  /** Length in bytes. */
  size: bigint;
  /** Offset into the fd. */
  offset: bigint;
  /** The backing fd (not taken over: the caller closes it). */
  fd: number;
}

/** Why a SYNC_SYSMEM region was refused. */
export class GuestMemoryError extends Error {
  /** Builds the error for region `index`. */
  constructor(index: number, detail: string) {
    super(`SYNC_SYSMEM: region ${index}: ${detail}`);
    this.name = "GuestMemoryError";
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The guest-physical memory map of one device's peer. */
export class GuestMemory implements Disposable {
  #regions: Region[] = [];

  /**
   * Replaces the whole map with `specs`. All-or-nothing: if one region is
   * invalid (beyond its file, overlapping, not page-aligned) nothing changes
   * and GuestMemoryError says which. Regions of size 0 are skipped.
   */
  replace(specs: readonly RegionSpec[]): void {
    const next: Region[] = [];
    try {
      specs.forEach((s, i) => {
        if (s.size === 0n) return;
        if (
          s.gpa > MAX_SAFE || s.size > MAX_SAFE || s.offset > MAX_SAFE ||
          s.offset < 0n
        ) {
          throw new GuestMemoryError(i, "address, size or offset out of range");
        }
        const gpa = Number(s.gpa);
        const size = Number(s.size);
        const offset = Number(s.offset);
        if (offset % 4096 !== 0) {
          throw new GuestMemoryError(i, `offset ${offset} not page-aligned`);
        }
        // Mapping past the end of the file would SIGBUS on access.
        const fsize = fileSize(s.fd);
        if (offset + size > fsize) {
          throw new GuestMemoryError(
            i,
            `${size} bytes at offset ${offset} exceed the file's ${fsize}`,
          );
        }
        for (const r of next) {
          if (gpa < r.end && gpa + size > r.gpa) {
            throw new GuestMemoryError(i, `overlaps 0x${r.gpa.toString(16)}`);
          }
        }
        next.push({
          gpa,
          end: gpa + size,
          map: mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd, offset),
        });
      });
    } catch (e) {
      for (const r of next) r.map.unmap();
      throw e;
    }
    this.#unmapAll();
    this.#regions = next;
  }

  /** Number of mapped regions. */
  get regionCount(): number {
    return this.#regions.length;
  }

  /** The region holding all of [gpa, gpa+len), or null. */
  #find(gpa: number, len: number): Region | null {
    for (const r of this.#regions) {
      if (gpa >= r.gpa && gpa + len <= r.end) return r;
    }
    return null;
  }

  /** Copies guest memory at `gpa` into `dst`; false if not all mapped. */
  read(gpa: number, dst: Uint8Array): boolean {
    const r = this.#find(gpa, dst.length);
    if (r === null) return false;
    const off = gpa - r.gpa;
    dst.set(r.map.bytes.subarray(off, off + dst.length));
    return true;
  }

  /** Copies `src` into guest memory at `gpa`; false if not all mapped. */
  write(gpa: number, src: Uint8Array): boolean {
    const r = this.#find(gpa, src.length);
    if (r === null) return false;
    r.map.bytes.set(src, gpa - r.gpa);
    return true;
  }

  #unmapAll(): void {
    const old = this.#regions;
    this.#regions = [];
    for (const r of old) r.map.unmap();
  }

  /** Unmaps everything. */
  close(): void {
    this.#unmapAll();
  }

  /** Unmaps everything (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
