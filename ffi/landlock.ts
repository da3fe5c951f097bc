// Linux Landlock (landlock_create_ruleset/add_rule/restrict_self, through
// syscall(2): libc has no wrappers) and prctl(PR_SET_NO_NEW_PRIVS). The
// uapi struct layouts live here only (the numbers in syscalls.ts).

import { check } from "./errors.ts";
import { closeFd, cString } from "./fd.ts";
import { libc } from "./libc.ts";
import { addressOf, Syscall, syscall } from "./syscalls.ts";

const PR_SET_NO_NEW_PRIVS = 38n;
const LANDLOCK_CREATE_RULESET_VERSION = 1n;
const LANDLOCK_RULE_PATH_BENEATH = 1n;
const LANDLOCK_RULE_NET_PORT = 2n;
const O_PATH = 0o10000000;

/** Filesystem access rights (LANDLOCK_ACCESS_FS_*), with the ABI adding each. */
export const AccessFs = {
  EXECUTE: 1 << 0,
  WRITE_FILE: 1 << 1,
  READ_FILE: 1 << 2,
  READ_DIR: 1 << 3,
  REMOVE_DIR: 1 << 4,
  REMOVE_FILE: 1 << 5,
  MAKE_CHAR: 1 << 6,
  MAKE_DIR: 1 << 7,
  MAKE_REG: 1 << 8,
  MAKE_SOCK: 1 << 9,
  MAKE_FIFO: 1 << 10,
  MAKE_BLOCK: 1 << 11,
  MAKE_SYM: 1 << 12,
  /** ABI 2. */
  REFER: 1 << 13,
  /** ABI 3. */
  TRUNCATE: 1 << 14,
  /** ABI 5. */
  IOCTL_DEV: 1 << 15,
} as const;

/** TCP access rights (LANDLOCK_ACCESS_NET_*, ABI 4). */
export const AccessNet = { BIND_TCP: 1, CONNECT_TCP: 2 } as const;

/** IPC scopes (LANDLOCK_SCOPE_*, ABI 6). */
export const Scope = { ABSTRACT_UNIX_SOCKET: 1, SIGNAL: 2 } as const;

/** Every filesystem right the kernel of Landlock ABI `abi` knows. */
export function fsRightsOfAbi(abi: number): number {
  let all = (1 << 13) - 1;
  if (abi >= 2) all |= AccessFs.REFER;
  if (abi >= 3) all |= AccessFs.TRUNCATE;
  if (abi >= 5) all |= AccessFs.IOCTL_DEV;
  return all;
}

// struct landlock_ruleset_attr: u64 handled_access_fs@0,
// u64 handled_access_net@8 (ABI 4), u64 scoped@16 (ABI 6); 24 bytes. An
// older kernel takes the larger struct as long as its unknown tail is 0.
const RULESET_ATTR_SIZE = 24;
// struct landlock_path_beneath_attr (packed): u64 allowed_access@0,
// s32 parent_fd@8; 12 bytes.
const PATH_BENEATH_SIZE = 12;
// struct landlock_net_port_attr: u64 allowed_access@0, u64 port@8.
const NET_PORT_SIZE = 16;

// SAFETY (every addressOf below): the buffer stays referenced across the
// syscall it is passed to, and the kernel only reads it during that call.

/**
 * The Landlock ABI version the kernel offers, or throws SysError
 * (ENOSYS: not built in; EOPNOTSUPP: disabled at boot).
 */
export function landlockAbi(): number {
  return syscall(
    "landlock_create_ruleset",
    Syscall.landlock_create_ruleset,
    0n,
    0n,
    LANDLOCK_CREATE_RULESET_VERSION,
  );
}

/**
 * prctl(PR_SET_NO_NEW_PRIVS): this thread and what it starts can never gain
 * privileges by exec (needed for Landlock and seccomp without CAP_SYS_ADMIN).
 */
export function setNoNewPrivs(): void {
  syscall(
    "prctl(PR_SET_NO_NEW_PRIVS)",
    Syscall.prctl,
    PR_SET_NO_NEW_PRIVS,
    1n,
    0n,
  );
}

/** What a ruleset restricts: everything handled and not allowed by a rule. */
export interface RulesetAttr {
  /** Handled filesystem rights (AccessFs). */
  fs: number;
  /** Handled TCP rights (AccessNet), 0 before ABI 4. */
  net: number;
  /** IPC scopes (Scope), 0 before ABI 6. */
  scoped: number;
}

/** A Landlock ruleset being built; restrictSelf() applies it. */
export class Ruleset implements Disposable {
  #fd: number;

  /** Creates a ruleset handling `attr`. */
  constructor(attr: RulesetAttr) {
    const buf = new Uint8Array(RULESET_ATTR_SIZE);
    const v = new DataView(buf.buffer);
    v.setBigUint64(0, BigInt(attr.fs), true);
    v.setBigUint64(8, BigInt(attr.net), true);
    v.setBigUint64(16, BigInt(attr.scoped), true);
    this.#fd = syscall(
      "landlock_create_ruleset",
      Syscall.landlock_create_ruleset,
      addressOf(buf),
      BigInt(RULESET_ATTR_SIZE),
      0n,
    );
  }

  /** Allows `access` (AccessFs) beneath `path` (a file or a directory). */
  allowPath(path: string, access: number): void {
    const fd = check(
      libc.open(cString(path), O_PATH | 0o2000000, /* O_CLOEXEC */ 0),
      `open ${path}`,
    );
    try {
      const buf = new Uint8Array(PATH_BENEATH_SIZE);
      const v = new DataView(buf.buffer);
      v.setBigUint64(0, BigInt(access), true);
      v.setInt32(8, fd, true);
      syscall(
        `landlock_add_rule ${path}`,
        Syscall.landlock_add_rule,
        BigInt(this.#fd),
        LANDLOCK_RULE_PATH_BENEATH,
        addressOf(buf),
      );
    } finally {
      closeFd(fd);
    }
  }

  /** Allows `access` (AccessNet) on TCP port `port`. */
  allowPort(port: number, access: number): void {
    const buf = new Uint8Array(NET_PORT_SIZE);
    const v = new DataView(buf.buffer);
    v.setBigUint64(0, BigInt(access), true);
    v.setBigUint64(8, BigInt(port), true);
    syscall(
      `landlock_add_rule port ${port}`,
      Syscall.landlock_add_rule,
      BigInt(this.#fd),
      LANDLOCK_RULE_NET_PORT,
      addressOf(buf),
    );
  }

  /**
   * Sets no_new_privs (required to restrict an unprivileged process) and
   * confines the calling thread, and every process and thread it creates
   * from now on, to this ruleset. Threads that already exist keep their
   * old domain: Landlock before ABI 8 cannot restrict them.
   */
  restrictSelf(): void {
    setNoNewPrivs();
    syscall(
      "landlock_restrict_self",
      Syscall.landlock_restrict_self,
      BigInt(this.#fd),
      0n,
      0n,
    );
  }

  /** Closes the ruleset fd (the restriction, once applied, stays). */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  /** See close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
