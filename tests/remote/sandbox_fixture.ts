// Test fixture: applies the remote's sandbox to this process, then tries
// what a hostile device model would, printing one JSON object of outcomes.
// Usage: sandbox_fixture.ts ALLOWED_DIR PARENT_PID TCP_PORT OUTSIDE_PATH
//        sandbox_fixture.ts --no-landlock  (as on a kernel without it)

import {
  closeFd,
  denySyscalls,
  openPath,
  setNoNewPrivs,
  Syscall,
} from "../../ffi/mod.ts";
import {
  applySandbox,
  threadsBeforeDevices,
} from "../../lib/remote/sandbox.ts";

const [allowed, parentPid, port, outsidePath] = Deno.args;
// Nothing in this fixture is device code: every thread it has is its own.
const exempt = { before: threadsBeforeDevices(), tids: [], pids: [] };

if (allowed === "--no-landlock") {
  setNoNewPrivs();
  denySyscalls([Syscall.landlock_create_ruleset], 38 /* ENOSYS */);
  try {
    await applySandbox({ allowPaths: [] }, exempt);
  } catch (e) {
    console.log((e as Error).message);
  }
  Deno.exit(0);
}

/** "ok", or the error's name and message. */
async function attempt(fn: () => unknown): Promise<string> {
  try {
    await fn();
    return "ok";
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

// Async file reads run on Deno's blocking thread pool: make sure a thread
// of it exists before the sandbox, as it may in a real remote.
await Deno.readTextFile("/etc/hostname");
await applySandbox({ allowPaths: [allowed] }, exempt);
const outcomes: Record<string, string> = {
  readSync: await attempt(() => Deno.readTextFileSync("/etc/passwd")),
  readAsync: await attempt(() => Deno.readTextFile("/etc/passwd")),
  openFfi: await attempt(() => closeFd(openPath("/etc/passwd", 0))),
  writeOutside: await attempt(() => Deno.writeTextFileSync(outsidePath, "x")),
  writeAllowed: await attempt(() =>
    Deno.writeTextFileSync(`${allowed}/allowed.txt`, "x")
  ),
  writeAllowedAsync: await attempt(() =>
    Deno.writeTextFile(`${allowed}/allowed2.txt`, "x")
  ),
  spawn: await attempt(() => new Deno.Command("/bin/true").output()),
  connect: await attempt(async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    c.close();
  }),
  signalParent: await attempt(() => Deno.kill(Number(parentPid), "SIGCONT")),
  signalSelf: await attempt(() => Deno.kill(Deno.pid, "SIGCONT")),
  clock: await attempt(() => new Date().toString() + performance.now()),
  timer: await attempt(() => new Promise((r) => setTimeout(r, 10))),
  random: await attempt(() => crypto.getRandomValues(new Uint8Array(16))),
  fdinfo: await attempt(() => closeFd(openPath("/proc/self/fdinfo/0", 0))),
};
console.log(JSON.stringify(outcomes));
// The parked pool threads' calls never settle: only exit() ends the process.
Deno.exit(0);
