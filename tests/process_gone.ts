// Test helper: whether a process a test started has ended.

/** Whether `pid` is gone (or a zombie nobody reaped yet). */
export function gone(pid: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[2] === "Z";
  } catch {
    return true;
  }
}
