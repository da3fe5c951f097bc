/* Prints the KVM struct sizes, member offsets and ioctl numbers iohub uses,
 * as "name value" lines, from the kernel headers (linux-libc-dev).
 * tests/kvm/kvm_test.ts compiles and runs it and compares with lib/kvm/layout.ts. */
#include <stddef.h>
#include <stdio.h>
#include <linux/kvm.h>

#define SIZE(name, type) printf("%s.size %zu\n", name, sizeof(type))
#define OFF(name, type, member) \
	printf("%s.%s %zu\n", name, #member, offsetof(type, member))
#define OFFN(name, key, type, member) \
	printf("%s.%s %zu\n", name, key, offsetof(type, member))
#define IOCTL(req) printf("ioctl.%s %lu\n", #req, (unsigned long)(req))

int main(void)
{
	SIZE("userspaceMemoryRegion", struct kvm_userspace_memory_region);
	OFF("userspaceMemoryRegion", struct kvm_userspace_memory_region, slot);
	OFF("userspaceMemoryRegion", struct kvm_userspace_memory_region, flags);
	OFFN("userspaceMemoryRegion", "guestPhysAddr",
	     struct kvm_userspace_memory_region, guest_phys_addr);
	OFFN("userspaceMemoryRegion", "memorySize",
	     struct kvm_userspace_memory_region, memory_size);
	OFFN("userspaceMemoryRegion", "userspaceAddr",
	     struct kvm_userspace_memory_region, userspace_addr);

	SIZE("irqfd", struct kvm_irqfd);
	OFF("irqfd", struct kvm_irqfd, fd);
	OFF("irqfd", struct kvm_irqfd, gsi);
	OFF("irqfd", struct kvm_irqfd, flags);
	OFF("irqfd", struct kvm_irqfd, resamplefd);


	SIZE("lapicState", struct kvm_lapic_state);

	SIZE("msi", struct kvm_msi);
	OFFN("msi", "addressLo", struct kvm_msi, address_lo);
	OFFN("msi", "addressHi", struct kvm_msi, address_hi);
	OFF("msi", struct kvm_msi, data);
	OFF("msi", struct kvm_msi, flags);

	OFFN("run", "immediateExit", struct kvm_run, immediate_exit);
	OFFN("run", "exitReason", struct kvm_run, exit_reason);
	OFFN("run", "ioDirection", struct kvm_run, io.direction);
	OFFN("run", "ioSize", struct kvm_run, io.size);
	OFFN("run", "ioPort", struct kvm_run, io.port);
	OFFN("run", "ioCount", struct kvm_run, io.count);
	OFFN("run", "ioDataOffset", struct kvm_run, io.data_offset);
	OFFN("run", "mmioPhysAddr", struct kvm_run, mmio.phys_addr);
	OFFN("run", "mmioData", struct kvm_run, mmio.data);
	OFFN("run", "mmioLen", struct kvm_run, mmio.len);
	OFFN("run", "mmioIsWrite", struct kvm_run, mmio.is_write);

	SIZE("regs", struct kvm_regs);
	OFF("regs", struct kvm_regs, rsp);
	OFF("regs", struct kvm_regs, rip);
	OFF("regs", struct kvm_regs, rflags);

	SIZE("segment", struct kvm_segment);
	OFF("segment", struct kvm_segment, base);
	OFF("segment", struct kvm_segment, limit);
	OFF("segment", struct kvm_segment, selector);
	OFF("segment", struct kvm_segment, type);
	OFF("segment", struct kvm_segment, present);
	OFF("segment", struct kvm_segment, dpl);
	OFF("segment", struct kvm_segment, db);
	OFF("segment", struct kvm_segment, s);
	OFF("segment", struct kvm_segment, l);
	OFF("segment", struct kvm_segment, g);
	OFF("segment", struct kvm_segment, avl);

	SIZE("sregs", struct kvm_sregs);
	OFF("sregs", struct kvm_sregs, cs);
	OFF("sregs", struct kvm_sregs, ds);
	OFF("sregs", struct kvm_sregs, es);
	OFF("sregs", struct kvm_sregs, fs);
	OFF("sregs", struct kvm_sregs, gs);
	OFF("sregs", struct kvm_sregs, ss);
	OFF("sregs", struct kvm_sregs, tr);
	OFF("sregs", struct kvm_sregs, ldt);
	OFF("sregs", struct kvm_sregs, gdt);
	OFF("sregs", struct kvm_sregs, idt);
	OFF("sregs", struct kvm_sregs, cr0);
	OFF("sregs", struct kvm_sregs, efer);
	OFFN("sregs", "apicBase", struct kvm_sregs, apic_base);

	IOCTL(KVM_GET_API_VERSION);
	IOCTL(KVM_CREATE_VM);
	IOCTL(KVM_CHECK_EXTENSION);
	IOCTL(KVM_GET_VCPU_MMAP_SIZE);
	IOCTL(KVM_CREATE_VCPU);
	IOCTL(KVM_SET_USER_MEMORY_REGION);
	IOCTL(KVM_CREATE_IRQCHIP);
	IOCTL(KVM_IRQFD);
	IOCTL(KVM_RUN);
	IOCTL(KVM_GET_REGS);
	IOCTL(KVM_SET_REGS);
	IOCTL(KVM_GET_SREGS);
	IOCTL(KVM_SET_SREGS);
	IOCTL(KVM_GET_LAPIC);
	IOCTL(KVM_SET_LAPIC);
	IOCTL(KVM_SIGNAL_MSI);

	printf("cap.IRQCHIP %d\n", KVM_CAP_IRQCHIP);
	printf("cap.IRQFD %d\n", KVM_CAP_IRQFD);
	printf("cap.SIGNAL_MSI %d\n", KVM_CAP_SIGNAL_MSI);
	printf("cap.IRQFD_RESAMPLE %d\n", KVM_CAP_IRQFD_RESAMPLE);
	printf("apiVersion %d\n", KVM_API_VERSION);
	return 0;
}
