// Test helper: a TCP socket whose close(2) waits for as long as the test
// likes, the fd a hostile peer sends to stall whoever closes it last.

import { assertEquals } from "@std/assert";
import { setNonblocking } from "../ffi/mod.ts";

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_LINGER = 13;

const sys = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
}).symbols;

/**
 * A TCP socket whose last close waits: connected to `listener`, whose end
 * (`conn`) never reads, its queue full, SO_LINGER set for an hour. Closing
 * `conn` ends the wait.
 */
export async function lingering(
  listener: Deno.TcpListener,
): Promise<{ fd: number; conn: Deno.TcpConn }> {
  const fd = sys.socket(AF_INET, SOCK_STREAM, 0);
  const sa = new Uint8Array(16);
  const v = new DataView(sa.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, listener.addr.port, false);
  sa.set([127, 0, 0, 1], 4);
  assertEquals(sys.connect(fd, sa, 16), 0);
  const conn = await listener.accept();
  const linger = new Int32Array([1, 3600]);
  assertEquals(
    sys.setsockopt(fd, SOL_SOCKET, SO_LINGER, new Uint8Array(linger.buffer), 8),
    0,
  );
  setNonblocking(fd, true);
  const chunk = new Uint8Array(65536);
  const fill = (): number => {
    let total = 0;
    for (let n; (n = Number(sys.write(fd, chunk, BigInt(chunk.length)))) > 0;) {
      total += n;
    }
    return total;
  };
  // The receiving kernel makes room a while later (it compacts its queue),
  // and a queue that drains ends the linger: fill until it takes no more.
  fill();
  do await new Promise((done) => setTimeout(done, 100)); while (fill() > 0);
  return { fd, conn };
}
