// Closing an fd a peer sent. close(2) can wait on the peer, uninterruptibly
// and for as long as it likes: the last close of a FUSE file sends its
// daemon a FLUSH, a TCP socket with SO_LINGER waits for its queue to drain,
// and closing an eventfd or a pipe takes locks a peer's stuck thread may
// hold; a UNIX socket's queue may carry any of these as SCM_RIGHTS. No kind
// of fd is safe, so once a PeerFdCloser runs, every peer fd is closed on its
// thread: a close that never returns holds only that thread.

import { closeFd } from "./fd.ts";
import { LIBC_NAME } from "./libc.ts";

// The closer's code, plain JavaScript from a data: URL (it may start under
// --sandbox, when no file can be read).
const CLOSER_JS = `
self.onmessage = ({ data }) => {
  if (data === "done") {
    self.close();
    return;
  }
  if (data.libc !== undefined) {
    self.close_ = Deno.dlopen(data.libc, {
      close: { parameters: ["i32"], result: "i32" },
    }).symbols.close;
    self.pending = new Int32Array(data.pending);
    self.postMessage("ready");
    return;
  }
  self.close_(data);
  Atomics.sub(self.pending, 0, 1);
};
`;

// Taken when iohub's modules load, before any device module does: device
// code may replace the global Worker, and must not get to run this thread.
const WorkerClass = Worker;

let current: PeerFdCloser | null = null;

/**
 * Closes `fd`, received from a peer: on the running PeerFdCloser's thread,
 * or here when none runs (before a remote serves, and in processes that
 * trust their peers less dearly, such as the proxy).
 */
export function closePeerFd(fd: number): void {
  if (current === null) closeFd(fd);
  else current.close(fd);
}

/**
 * A thread of its own that closes peer fds (see above), installed for
 * closePeerFd() while it lives. Start it after --sandbox, so that its
 * thread is confined too.
 */
export class PeerFdCloser implements Disposable {
  readonly #worker: Worker;
  readonly #pending = new Int32Array(new SharedArrayBuffer(4));

  /** Starts the thread and installs it once it runs. */
  static async start(): Promise<PeerFdCloser> {
    const closer = new PeerFdCloser();
    await new Promise((ready, failed) => {
      closer.#worker.onmessage = ready;
      closer.#worker.onerror = (e) => {
        e.preventDefault();
        failed(new Error(`the fd closer did not start: ${e.message}`));
      };
    });
    current = closer;
    return closer;
  }

  private constructor() {
    this.#worker = new WorkerClass(
      `data:text/javascript,${encodeURIComponent(CLOSER_JS)}`,
      { type: "module" },
    );
    this.#worker.postMessage({
      libc: LIBC_NAME,
      pending: this.#pending.buffer,
    });
  }

  /** Closes that have been asked for and not done (a stuck one stays). */
  get pending(): number {
    return Atomics.load(this.#pending, 0);
  }

  /** Hands `fd` to the thread to close. */
  close(fd: number): void {
    Atomics.add(this.#pending, 0, 1);
    this.#worker.postMessage(fd);
  }

  /**
   * Uninstalls it; the thread ends once it has made the closes asked for
   * (it is not waited for: a stuck close would hold it for ever).
   */
  [Symbol.dispose](): void {
    if (current === this) current = null;
    this.#worker.postMessage("done");
  }
}
