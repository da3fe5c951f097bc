// Typed wrappers over /dev/kvm in the style of rust-vmm's kvm-ioctls: the
// system fd, its VMs (memory slots, in-kernel irqchip, irqfds) and vcpus.

export * from "./layout.ts";
export * from "./system.ts";
export * from "./vm.ts";
export * from "./regs.ts";
export * from "./vcpu.ts";
