// Guest RAM as the proxy shares it with SYNC_SYSMEM, and bounds-checked DMA
// into it. Only shared memory is taken (a memfd or a tmpfs file, not
// hugetlbfs): fstat or pread on a file elsewhere (FUSE, NFS) may never
// return, and the thread that would wait serves every device. A region is
// mapped only when its file is sealed against shrinking; any other is
// reached with pread/pwrite, because a file the peer truncates under a
// mapping would kill the whole remote with SIGBUS.

import type { SysmemRegion } from "../mpqemu/mod.ts";
import {
  closePeerFd,
  dupCloexec,
  F_SEAL_SHRINK,
  fileSize,
  isHugetlbfs,
  MAP_SHARED,
  type Mapping,
  mmap,
  OwnedFd,
  preadFd,
  PROT_READ,
  PROT_WRITE,
  pwriteFd,
  shmemSeals,
  SysError,
} from "../../ffi/mod.ts";

interface Region {
  gpa: number;
  end: number;
  // Exactly one of the two: a mapping of a sealed file, or the file itself.
  map: Mapping | null;
  file: OwnedFd | null;
  offset: number;
  // A DMA into this region failed (the file shrank): reported once.
  faulted: boolean;
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

// The address space a region's mapping takes (0 when it is not mapped).
function mappedBytes(r: Region): number {
  return r.map === null ? 0 : r.end - r.gpa;
}

/**
 * Address space that mappings of guest RAM may take together, and each
 * device's map alone: a sparse sealed memfd maps terabytes at no cost to
 * its peer, and a process whose address space is full fails every
 * allocation (V8's among them). Regions beyond either bound are reached
 * with pread/pwrite, as unsealed ones are; one peer cannot take all of it.
 */
export class MapBudget {
  /** The bytes all mappings may take. */
  readonly limit: number;
  /** The bytes one device's mappings may take. */
  readonly perDevice: number;
  #used = 0;

  /** A budget of `limit` bytes, `perDevice` of them for one device. */
  constructor(limit: number, perDevice: number) {
    this.limit = limit;
    this.perDevice = perDevice;
  }

  /** Takes `bytes` if they fit; whether they did. */
  take(bytes: number): boolean {
    if (this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    return true;
  }

  /** Gives back `bytes` taken before. */
  give(bytes: number): void {
    this.#used -= bytes;
  }

  /** Takes back `bytes` given back a moment ago (they still fit). */
  restore(bytes: number): void {
    this.#used += bytes;
  }
}

// Every device of the process shares one budget: 32 TiB of the 128 TiB a
// process has, 4 TiB (a large guest's RAM) for one device.
const PROCESS_BUDGET = new MapBudget(2 ** 45, 2 ** 42);

/** The guest-physical memory map of one device's peer. */
export class GuestMemory implements Disposable {
  #regions: Region[] = [];
  #fault: string | null = null;
  readonly #budget: MapBudget;

  /** Empty; its mappings take from `budget` (default: the process's). */
  constructor(budget: MapBudget = PROCESS_BUDGET) {
    this.#budget = budget;
  }

  // Unmaps and closes a region; `giveBack` returns its mapping's bytes to
  // the budget (replace() has already for the map it replaces).
  #release(r: Region, giveBack: boolean): void {
    try {
      if (r.map !== null) {
        if (giveBack) this.#budget.give(mappedBytes(r));
        r.map.unmap();
      }
    } finally {
      // A copy of the peer's fd: closed as one (ffi/peer_fd.ts).
      if (r.file !== null && !r.file.closed) closePeerFd(r.file.release());
    }
  }

  /**
   * Replaces the whole map with `specs`. All-or-nothing: if one region is
   * invalid (beyond its file, overlapping, not page-aligned) nothing changes
   * and GuestMemoryError says which. Regions of size 0 are skipped.
   */
  replace(specs: readonly SysmemRegion[]): void {
    const next: Region[] = [];
    // The map being replaced makes room for its successor.
    const held = this.#regions.reduce((n, r) => n + mappedBytes(r), 0);
    this.#budget.give(held);
    let share = 0;
    try {
      specs.forEach((s, i) => {
        try {
          if (s.size === 0n) return;
          // Addresses are numbers from here on: their sums must stay exact.
          if (
            s.gpa + s.size > MAX_SAFE || s.offset + s.size > MAX_SAFE ||
            s.offset < 0n
          ) {
            throw new GuestMemoryError(
              i,
              "address, size or offset out of range",
            );
          }
          const gpa = Number(s.gpa);
          const size = Number(s.size);
          const offset = Number(s.offset);
          if (offset % 4096 !== 0) {
            throw new GuestMemoryError(i, `offset ${offset} not page-aligned`);
          }
          const seals = shmemSeals(s.fd);
          if (seals === null) {
            throw new GuestMemoryError(
              i,
              "not shared memory (a memfd or a tmpfs file): a file elsewhere could stall the remote",
            );
          }
          // A mapping of hugetlbfs faults with SIGBUS once the peer punches
          // a hole (sealing allows it) and takes the free huge pages, and
          // hugetlbfs takes no pwrite to reach it otherwise.
          if (isHugetlbfs(s.fd)) {
            throw new GuestMemoryError(
              i,
              "on hugetlbfs, whose mapping its peer can make fault (SIGBUS): use a memfd without hugetlb",
            );
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
          // QEMU's memory-backend-memfd seals by default (seal=on): such RAM
          // is mapped. Adding the seal ourselves would change the peer's file.
          let map: Mapping | null = null;
          if (
            (seals & F_SEAL_SHRINK) !== 0 &&
            share + size <= this.#budget.perDevice && this.#budget.take(size)
          ) {
            try {
              map = mmap(
                size,
                PROT_READ | PROT_WRITE,
                MAP_SHARED,
                s.fd,
                offset,
              );
            } catch (e) {
              this.#budget.give(size);
              throw e;
            }
            share += size;
          }
          next.push({
            gpa,
            end: gpa + size,
            map,
            file: map === null ? new OwnedFd(dupCloexec(s.fd)) : null,
            offset,
            faulted: false,
          });
        } catch (e) {
          // A call the peer's fd made fail (mmap of a read-only file, an
          // fd that is no file) names the region like every other refusal.
          if (e instanceof SysError) throw new GuestMemoryError(i, e.message);
          throw e;
        }
      });
    } catch (e) {
      for (const r of next) this.#release(r, true);
      this.#budget.restore(held);
      throw e;
    }
    const old = this.#regions;
    this.#regions = next;
    for (const r of old) this.#release(r, false);
  }

  /** Number of mapped regions. */
  get regionCount(): number {
    return this.#regions.length;
  }

  /** The region holding all of [gpa, gpa+len), or null. */
  #find(gpa: number, len: number): Region | null {
    // Past 2^53 a sum is rounded, and could pass a bound it crosses.
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(gpa + len)) {
      return null;
    }
    for (const r of this.#regions) {
      if (gpa >= r.gpa && gpa + len <= r.end) return r;
    }
    return null;
  }

  /** Number of regions reached by pread/pwrite instead of a mapping. */
  get unmappedCount(): number {
    return this.#regions.filter((r) => r.map === null).length;
  }

  /**
   * Copies guest memory at `gpa` into `dst`; false if not all of it is
   * guest memory (outside every region, or beyond a file that shrank).
   */
  read(gpa: number, dst: Uint8Array): boolean {
    const r = this.#find(gpa, dst.length);
    if (r === null) return false;
    const off = gpa - r.gpa;
    if (r.map !== null) {
      dst.set(r.map.bytes.subarray(off, off + dst.length));
      return true;
    }
    return this.#io(r, () => preadFd(r.file!.fd, dst, r.offset + off), dst);
  }

  /** Copies `src` into guest memory at `gpa`; false as for read(). */
  write(gpa: number, src: Uint8Array): boolean {
    const r = this.#find(gpa, src.length);
    if (r === null) return false;
    const off = gpa - r.gpa;
    if (r.map !== null) {
      r.map.bytes.set(src, off);
      return true;
    }
    // A pwrite past the end of a file the peer shrank would grow it again:
    // refuse instead, as a read there fails.
    const fd = r.file!.fd;
    if (fileSize(fd) < r.offset + off + src.length) {
      return this.#io(r, () => -1, src);
    }
    return this.#io(r, () => pwriteFd(fd, src, r.offset + off), src);
  }

  /** Runs one pread/pwrite; a short or failed one marks the region. */
  #io(r: Region, op: () => number, buf: Uint8Array): boolean {
    let n: number;
    try {
      n = op();
    } catch {
      n = -1;
    }
    if (n === buf.length) return true;
    if (!r.faulted) {
      r.faulted = true;
      this.#fault = `guest memory at 0x${
        r.gpa.toString(16)
      }: its file no longer holds ${r.end - r.gpa} bytes at offset ${r.offset}`;
    }
    return false;
  }

  /**
   * Why the last DMA failed inside a region, the first time that region
   * failed (null otherwise): the caller logs it once.
   */
  takeFault(): string | null {
    const f = this.#fault;
    this.#fault = null;
    return f;
  }

  #unmapAll(): void {
    const old = this.#regions;
    this.#regions = [];
    for (const r of old) this.#release(r, true);
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
