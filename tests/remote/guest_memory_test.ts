// Guest memory in the remote's own process: regions from real memfds,
// mapped when sealed against shrinking and reached with pread/pwrite
// otherwise, bounds on every access, all-or-nothing replacement, and no fd
// held once closed.

import { assert, assertEquals, assertFalse, assertThrows } from "@std/assert";
import {
  addSeals,
  closeFd,
  F_SEAL_SHRINK,
  fileSize,
  memfd,
  MFD_ALLOW_SEALING,
  openPath,
  pipe,
} from "../../ffi/mod.ts";

// open(2): only a place in the filesystem, no file to read or map.
const O_PATH = 0o10000000;
import { libc } from "../../ffi/libc.ts";
import {
  GuestMemory,
  GuestMemoryError,
  MapBudget,
} from "../../lib/remote/guest_memory.ts";
import { assertNoFdLeak } from "../fd_check.ts";

const PAGE = 4096;

Deno.test("guest memory: sealed files are mapped, others reached with pread/pwrite, both alike", () =>
  assertNoFdLeak(() => {
    const sealed = memfd("sealed", 4 * PAGE, MFD_ALLOW_SEALING);
    addSeals(sealed, F_SEAL_SHRINK);
    const plain = memfd("plain", 2 * PAGE);
    using mem = new GuestMemory();
    try {
      mem.replace([
        { gpa: 0n, size: BigInt(4 * PAGE), offset: 0n, fd: sealed },
        { gpa: 0x10000n, size: BigInt(PAGE), offset: BigInt(PAGE), fd: plain },
      ]);
    } finally {
      // The memory keeps what it needs: the caller's fds are its own.
      closeFd(sealed);
      closeFd(plain);
    }
    assertEquals(mem.regionCount, 2);
    assertEquals(mem.unmappedCount, 1, "only the unsealed file is not mapped");
    for (const gpa of [0x100, 0x10000 + 0x80]) {
      const out = Uint8Array.from(
        { length: 64 },
        (_, i) => (i * 7 + gpa) & 0xff,
      );
      assert(mem.write(gpa, out));
      const back = new Uint8Array(64);
      assert(mem.read(gpa, back));
      assertEquals(back, out);
    }
  }));

Deno.test("guest memory: an access outside every region, or across its end, is refused", () =>
  assertNoFdLeak(() => {
    const fd = memfd("ram", PAGE);
    using mem = new GuestMemory();
    mem.replace([{ gpa: 0x2000n, size: BigInt(PAGE), offset: 0n, fd }]);
    closeFd(fd);
    const buf = new Uint8Array(16);
    assertFalse(mem.read(0x1000, buf), "below the region");
    assertFalse(mem.write(0x2000 + PAGE - 8, buf), "across its end");
    assertFalse(mem.read(0x2000 + PAGE, buf), "just after it");
    assert(mem.read(0x2000 + PAGE - 16, buf), "its last 16 bytes");
  }));

Deno.test("guest memory: a bad region leaves the previous map as it was", () =>
  assertNoFdLeak(() => {
    const fd = memfd("ram", 2 * PAGE);
    using mem = new GuestMemory();
    try {
      mem.replace([{ gpa: 0n, size: BigInt(PAGE), offset: 0n, fd }]);
      const cases: [string, bigint, bigint, bigint][] = [
        ["beyond the file", 0x10000n, BigInt(4 * PAGE), 0n],
        ["not page-aligned", 0x10000n, BigInt(PAGE), 100n],
        ["overlaps", 0x800n, BigInt(PAGE), 0n],
      ];
      for (const [what, gpa, size, offset] of cases) {
        const e = assertThrows(
          () =>
            mem.replace([
              { gpa: 0n, size: BigInt(PAGE), offset: 0n, fd },
              { gpa, size, offset, fd },
            ]),
          GuestMemoryError,
        );
        assert(
          e.message.startsWith("SYNC_SYSMEM: region 1:"),
          `${what}: ${e.message}`,
        );
        assertEquals(mem.regionCount, 1, what);
      }
    } finally {
      closeFd(fd);
    }
  }));

Deno.test("guest memory: a system call the peer's fd makes fail names the region too", () =>
  assertNoFdLeak(() => {
    const fd = memfd("ram", PAGE, MFD_ALLOW_SEALING);
    addSeals(fd, F_SEAL_SHRINK);
    // The same sealed file opened read-only cannot be mapped for writing;
    // an O_PATH fd is no file to ask for seals.
    const readOnly = openPath(`/proc/self/fd/${fd}`, 0);
    const pathOnly = openPath(`/proc/self/fd/${fd}`, O_PATH);
    using mem = new GuestMemory();
    try {
      for (
        const [other, msg] of [
          [readOnly, "SYNC_SYSMEM: region 1: mmap: EACCES"],
          [pathOnly, "SYNC_SYSMEM: region 1: fcntl(F_GET_SEALS): EBADF"],
        ] as const
      ) {
        const e = assertThrows(
          () =>
            mem.replace([
              { gpa: 0n, size: BigInt(PAGE), offset: 0n, fd },
              { gpa: 0x10000n, size: BigInt(PAGE), offset: 0n, fd: other },
            ]),
          GuestMemoryError,
        );
        assert(e.message.startsWith(msg), e.message);
        assertEquals(mem.regionCount, 0);
      }
    } finally {
      closeFd(fd);
      closeFd(readOnly);
      closeFd(pathOnly);
    }
  }));

Deno.test("guest memory: a file the peer shrank fails reads and writes, and is not grown back", () =>
  assertNoFdLeak(() => {
    const fd = memfd("ram", 2 * PAGE);
    using mem = new GuestMemory();
    try {
      mem.replace([{ gpa: 0n, size: BigInt(2 * PAGE), offset: 0n, fd }]);
      assertEquals(libc.ftruncate(fd, 0n), 0);
      const buf = new Uint8Array(16);
      assertFalse(mem.write(0x1000, buf), "device -> guest");
      assertFalse(mem.read(0x1000, buf), "guest -> device");
      assertEquals(fileSize(fd), 0, "the write did not grow the file");
      assert(mem.takeFault()?.includes("no longer holds"));
    } finally {
      closeFd(fd);
    }
  }));

Deno.test("guest memory: only shared memory is taken; anything else is refused without asking its filesystem", () =>
  assertNoFdLeak(() => {
    // /dev/shm is tmpfs: a file there is shared memory like a memfd. A pipe
    // stands for any other file: F_GET_SEALS refuses both alike, wherever
    // the checkout lives.
    const shm = `/dev/shm/iohub-guest-memory-${Deno.pid}`;
    Deno.writeFileSync(shm, new Uint8Array(PAGE));
    const shmFd = openPath(shm, 2 /* O_RDWR */);
    const [other, otherEnd] = pipe();
    using mem = new GuestMemory();
    try {
      mem.replace([{ gpa: 0n, size: BigInt(PAGE), offset: 0n, fd: shmFd }]);
      assertEquals(mem.regionCount, 1);
      const e = assertThrows(
        () =>
          mem.replace([{ gpa: 0n, size: BigInt(PAGE), offset: 0n, fd: other }]),
        GuestMemoryError,
      );
      assertEquals(
        e.message,
        "SYNC_SYSMEM: region 0: not shared memory (a memfd or a tmpfs file): a file elsewhere could stall the remote",
      );
      assertEquals(mem.regionCount, 1, "the previous map stays");
    } finally {
      closeFd(shmFd);
      closeFd(other);
      closeFd(otherEnd);
      Deno.removeSync(shm);
    }
  }));

Deno.test("guest memory: addresses stay exact: a region ending past 2^53 is refused, an access there too", () =>
  assertNoFdLeak(() => {
    const fd = memfd("ram", 2 * PAGE);
    using mem = new GuestMemory();
    try {
      const top = 2n ** 53n - BigInt(PAGE);
      assertThrows(
        () =>
          mem.replace([{ gpa: top, size: BigInt(2 * PAGE), offset: 0n, fd }]),
        GuestMemoryError,
        "out of range",
      );
      // The highest region numbers hold exactly.
      const gpa = 2n ** 53n - 1n - BigInt(PAGE);
      mem.replace([{ gpa, size: BigInt(PAGE), offset: 0n, fd }]);
      const buf = new Uint8Array(4);
      assert(mem.write(Number(gpa), buf));
      assertFalse(mem.write(Number(gpa) + PAGE - 2, buf), "across its end");
      assertFalse(mem.read(2 ** 53, buf), "beyond exact numbers");
    } finally {
      closeFd(fd);
    }
  }));

Deno.test("guest memory: mappings beyond the address-space budget, or one device's share of it, are reached with pread/pwrite", () =>
  assertNoFdLeak(() => {
    const fd = memfd("ram", 4 * PAGE, MFD_ALLOW_SEALING);
    addSeals(fd, F_SEAL_SHRINK);
    const budget = new MapBudget(3 * PAGE, 2 * PAGE);
    using a = new GuestMemory(budget);
    using b = new GuestMemory(budget);
    try {
      const region = (gpa: bigint, pages: number) => ({
        gpa,
        size: BigInt(pages * PAGE),
        offset: 0n,
        fd,
      });
      a.replace([region(0n, 2)]);
      // The same map again replaces the first: it is not counted twice.
      a.replace([region(0n, 2)]);
      b.replace([region(0n, 2)]);
      assertEquals([a.unmappedCount, b.unmappedCount], [0, 1]);
      // The same bytes, whichever way they are reached.
      const out = new Uint8Array([1, 2, 3, 4]);
      assert(a.write(PAGE, out));
      const back = new Uint8Array(4);
      assert(b.read(PAGE, back));
      assertEquals(back, out);
      a.close();
      b.replace([region(0n, 2)]);
      assertEquals(b.unmappedCount, 0, "a's share came back");
      b.replace([region(0n, 1), region(0x10000n, 2)]);
      assertEquals(b.unmappedCount, 1, "one device maps 2 pages at most");
      // A map refused whole leaves the budget as it was.
      assertThrows(() => b.replace([region(0n, 1), region(0n, 1)]));
      // b still maps 1 page: a takes 2, and a third device finds none left.
      a.replace([region(0n, 2)]);
      using c = new GuestMemory(budget);
      c.replace([region(0n, 1)]);
      assertEquals([a.unmappedCount, c.unmappedCount], [0, 1]);
    } finally {
      closeFd(fd);
    }
  }));
Deno.test("guest memory: hugetlbfs RAM is refused: its peer could make a mapping of it fault", () =>
  assertNoFdLeak(() => {
    const MFD_HUGETLB = 4;
    let fd: number;
    try {
      fd = memfd("huge", 2 << 20, MFD_HUGETLB | MFD_ALLOW_SEALING);
    } catch (e) {
      console.log(`skipped: no hugetlb memfd here (${(e as Error).message})`);
      return;
    }
    using mem = new GuestMemory();
    try {
      addSeals(fd, F_SEAL_SHRINK);
      assertThrows(
        () => mem.replace([{ gpa: 0n, size: BigInt(2 << 20), offset: 0n, fd }]),
        GuestMemoryError,
        "SYNC_SYSMEM: region 0: on hugetlbfs",
      );
    } finally {
      closeFd(fd);
    }
  }));
