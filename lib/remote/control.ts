// `--control PATH`: a UNIX socket that answers every connection with the
// remote's live state as one JSON document, then closes it. Served from
// Deno's event loop beside the remote's own loop, through libc like every
// other socket of the remote (so it needs no Deno permission and works in
// the sandbox); a reader that does not read is dropped, never waited on.

import {
  acceptUnix,
  asPeerFdOwner,
  closeFd,
  closePeerSocket,
  connectUnix,
  MAX_PEER_FD_OWNERS,
  MsgIo,
  OWNER_STUCK_LIMIT,
  peerFdsPending,
  peerFdsStuck,
  pollReadable,
  pollWritable,
  readBefore,
  setNonblocking,
  WOULD_BLOCK,
} from "../../ffi/mod.ts";
import { listenReplacingStale } from "./listen.ts";

// How long a reader may take to read the state before it is dropped, and
// how often the accept loop checks whether it was closed.
const WRITE_DEADLINE_MS = 2000;
const ACCEPT_POLL_MS = 200;
// Control connections count as one peer for the fds their queues may hold
// (see asPeerFdOwner). While OWNER_STUCK_LIMIT of their closes are stuck (wait
// on a peer), or 64 are not done, no connection is taken: whoever
// may connect cannot keep connections open without end.
const CONTROL_FD_OWNER = MAX_PEER_FD_OWNERS - 1;
const CONTROL_PENDING_CLOSES = 64;

/** A listening control socket. */
export class ControlSocket implements AsyncDisposable {
  readonly #fd: number;
  readonly #path: string;
  readonly #io = new MsgIo(0);
  #done: Promise<void> = Promise.resolve();
  readonly #pending = new Set<Promise<void>>();
  #closed = false;

  /**
   * Listens on `path` (replacing a stale socket file); connections wait
   * until serve() starts answering them.
   */
  constructor(path: string) {
    this.#path = path;
    this.#fd = listenReplacingStale(path);
    try {
      setNonblocking(this.#fd, true);
    } catch (e) {
      closeFd(this.#fd);
      throw e;
    }
  }

  /**
   * Answers each connection with `state()` as JSON from now on. Separate
   * from listening because --sandbox must come in between: creating the
   * socket is refused once confined, and the wait for connections keeps a
   * thread of Deno's blocking pool busy, which the sandbox must find idle
   * to confine it.
   */
  serve(state: () => unknown): void {
    if (this.#closed) return;
    this.#done = this.#serve(state);
  }

  async #serve(state: () => unknown): Promise<void> {
    const encoder = new TextEncoder();
    while (!this.#closed) {
      if (
        peerFdsStuck(CONTROL_FD_OWNER) >= OWNER_STUCK_LIMIT ||
        peerFdsPending(CONTROL_FD_OWNER) >= CONTROL_PENDING_CLOSES
      ) {
        await new Promise((done) => setTimeout(done, ACCEPT_POLL_MS));
        continue;
      }
      if (!await pollReadable(this.#fd, ACCEPT_POLL_MS) || this.#closed) {
        continue;
      }
      let conn: number;
      try {
        conn = acceptUnix(this.#fd);
      } catch {
        // The peer left before we took it, or the process is out of fds
        // for now: the connection waits, and polling again at once would
        // spin.
        await new Promise((done) => setTimeout(done, ACCEPT_POLL_MS));
        continue;
      }
      const p = this.#answer(
        conn,
        encoder.encode(JSON.stringify(state()) + "\n"),
      )
        .finally(() => this.#pending.delete(p));
      this.#pending.add(p);
    }
  }

  async #answer(conn: number, bytes: Uint8Array): Promise<void> {
    const deadline = performance.now() + WRITE_DEADLINE_MS;
    try {
      setNonblocking(conn, true);
      let off = 0;
      while (off < bytes.length) {
        let n: number;
        try {
          n = this.#io.send(
            conn,
            bytes.subarray(off),
            bytes.length - off,
            null,
            0,
            [],
          );
        } catch {
          return; // the reader went away
        }
        if (n !== WOULD_BLOCK) {
          off += n;
          continue;
        }
        const left = deadline - performance.now();
        if (left <= 0 || !await pollWritable(conn, Math.ceil(left))) return;
      }
    } finally {
      // Its queue may hold fds a peer sent (a lingering TCP socket, say),
      // whose close can wait on that peer.
      closeControlFd(conn);
    }
  }

  /** Stops listening, finishes or drops the answers, removes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#done;
    await Promise.all(this.#pending);
    // Connections not taken yet go with it, and the fds in their queues.
    closeControlFd(this.#fd);
    try {
      Deno.removeSync(this.#path);
    } catch {
      // Already gone, or not ours to remove.
    }
  }

  /** See close(). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function closeControlFd(fd: number): void {
  asPeerFdOwner(CONTROL_FD_OWNER, () => closePeerSocket(fd));
}

/** Reads the state a control socket at `path` answers with. */
export async function readControl(
  path: string,
  timeoutMs = 5000,
): Promise<unknown> {
  const fd = connectUnix(path);
  try {
    setNonblocking(fd, true);
    const decoder = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const n = await readBefore(fd, buf, deadline);
      if (n === null) {
        // Connecting succeeds while the remote's thread is busy: the kernel
        // accepts on its behalf.
        throw new Error(
          `connected, but ${
            text === "" ? "no" : "an incomplete"
          } answer within ${
            timeoutMs / 1000
          } s (is it a remote's --control socket? A device's socket= path answers nothing, and takes this connection for its peer; so does a remote whose device code does not return: see its log)`,
        );
      }
      if (n === 0) break;
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return JSON.parse(text + decoder.decode());
  } finally {
    closeFd(fd);
  }
}
