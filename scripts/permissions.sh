# The Deno permissions iohub runs with, sourced by bin/iohub and
# scripts/compile.sh; README's `deno install` line spells out the same list.
# Why each is as wide as it is:
#   --allow-ffi    libc for sockets, eventfds, epoll, mmap and KVM ioctls
#   --allow-read   device modules, guest images and QEMU binaries at any
#                  path the user names; /proc and /dev/kvm
#   --allow-write  socket=PATH (the remote removes it once connected) and
#                  --serial FILE at any path; guest images; device code
#   --allow-net    device code (a device backed by a TCP service)
#   --allow-run    QEMU (--qemu PATH), the remote (this program), as/ld,
#                  setpriv, /bin/sh (a sandboxed remote's socket files)
#   --allow-env    PATH (finding setpriv), IOHUB_QEMU, HOME and
#                  XDG_CACHE_HOME (a compiled binary's image cache); any
#                  variable for device code
#   --allow-import device modules at any http(s) URL the user names (Deno
#                  alone allows a few well-known hosts)
# Device modules run in `iohub remote` and may do file and network I/O like
# any program; lib/qemu/self_command.ts's REMOTE_PERMISSIONS (the remote
# launch starts from source) is a subset of this list (a test checks).
# FFI can reach what these flags fence off, so they document what iohub
# does rather than bound it: --sandbox is what confines a remote.
IOHUB_PERMISSIONS=(
  --allow-ffi --allow-read --allow-write --allow-run --allow-net
  --allow-env --allow-import
)
