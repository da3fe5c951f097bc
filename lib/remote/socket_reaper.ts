// Socket files a sandboxed remote cannot remove itself: Landlock refuses
// the unlink, and the right to remove files in a socket's directory would
// let device code remove any file there. A shell started before the
// sandbox waits for the remote's end (its stdin pipe reaches EOF, however
// the remote ended, SIGKILL included) and removes each file that is still
// the socket the remote made, not one a later remote put there since.

// "$@" holds PATH DEV:INODE pairs. The shell ignores the signals that stop
// the remote with it (a Ctrl-C reaches the whole process group).
const SCRIPT = `trap '' INT TERM HUP
read -r _ || :
while [ "$#" -ge 2 ]; do
  if [ -S "$1" ] && [ "$(stat -c %d:%i -- "$1" 2>/dev/null)" = "$2" ]; then
    rm -f -- "$1"
  fi
  shift 2
done`;

function reaper([program, ...args]: string[]): Deno.ChildProcess {
  return new Deno.Command(program, {
    args,
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

// The reapers' stdin pipes: held, never written, for as long as the
// process lives; their write ends close only when it ends.
const held: WritableStream<Uint8Array>[] = [];

/**
 * Has the socket files at `paths` removed once this process has ended, if
 * they are still the sockets they are now. Call before the sandbox (it
 * starts a process and reads the files' identities); returns the pid of the
 * process it started, or null when there was nothing to remove.
 */
export function removeAtExit(paths: readonly string[]): number | null {
  const pairs = paths.flatMap((path) => {
    const st = Deno.statSync(path);
    return [path, `${st.dev}:${st.ino}`];
  });
  if (pairs.length === 0) return null;
  const shell = ["/bin/sh", "-c", SCRIPT, "iohub-socket-reaper", ...pairs];
  // In a session of its own, a kill of the remote's process group (a
  // launcher's SIGKILL) does not take the reaper with it; without setsid
  // (util-linux), the shell runs in the remote's group.
  let child: Deno.ChildProcess;
  try {
    child = reaper(["setsid", ...shell]);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    child = reaper(shell);
  }
  // Its status is never awaited: the remote must not wait for it to end.
  child.unref();
  held.push(child.stdin);
  return child.pid;
}
