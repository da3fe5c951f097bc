/*
 * iohub QEMU boot guest: a real-mode program SeaBIOS boots from a 1.44 MB
 * floppy (image built by lib/guest/boot_image.ts). It finds the iohub-testdev
 * behind QEMU's x-pci-proxy-dev, talks to it through both BARs, takes its
 * interrupts, moves data with its DMA engine, resets the machine to check
 * that the reset reaches the device, and prints one `IOHUB-RESULT` line on
 * COM1 before ending the run through isa-debug-exit (0 pass, 1 fail).
 *
 * Memory: the boot sector at 0x7c00 loads the rest right after itself
 * (0x7e00); the stack grows down from 0x7c00; DMA uses 0x20000.
 * The first boot's results survive the reset in CMOS bytes 0x60-0x67 and
 * the boot marker in 0x7f: QEMU's reset and SeaBIOS's POST leave
 * 0x60-0x7f alone (checked), while SeaBIOS zeroes RAM such as 0x20000.
 */
	.code16

	.set STACK_TOP, 0x7c00
	.set SECTORS_PER_TRACK, 18
	.set HEADS, 2
	.set DISK_TRIES, 5

	.set COM1, 0x3f8
	.set DEBUG_EXIT, 0xf4
	.set RESET_CONTROL, 0xcf9
	.set CMOS_INDEX, 0x70
	.set CMOS_DATA, 0x71

	/* CMOS bytes carrying the first boot's results across the reset. */
	.set CM_DEVICES, 0x60
	.set CM_IRQ_MMIO, 0x61
	.set CM_IRQ_PIO, 0x62
	.set CM_FLAGS, 0x63		/* F_* below */
	.set CM_CYCLES, 0x64		/* u32, 0x64-0x67 */
	.set CM_MARKER, 0x7f
	.set BOOT_MARKER, 0xb1		/* "the next boot is the one after reset" */

	.set F_ID_OK, 0x01
	.set F_DMA_TO_OK, 0x02
	.set F_DMA_FROM_OK, 0x04
	.set F_ARMED_OK, 0x08		/* SCRATCH/IRQ_MASK held the values before reset */

	.set TESTDEV_VENDOR_DEVICE, 0x10b11234
	.set TESTDEV_ID, 0x10b10001
	.set REG_ID, 0x00
	.set REG_SCRATCH, 0x04
	.set REG_IRQ_STATUS, 0x08
	.set REG_IRQ_RAISE, 0x0c
	.set REG_IRQ_ACK, 0x10
	.set REG_IRQ_MASK, 0x14
	.set REG_DMA_ADDR_LO, 0x20
	.set REG_DMA_ADDR_HI, 0x24
	.set REG_DMA_LEN, 0x28
	.set REG_DMA_CMD, 0x2c
	.set REG_DMA_STATUS, 0x30
	.set BUFFER, 0x800
	.set BUFFER_SIZE, 2048

	.set DMA_RAM, 0x20000
	.set SCRATCH_VALUE, 0x5a5a1234
	.set MASK_VALUE, 0x1

	.set IRQS_PER_PHASE, 16
	/* About 190 ms of a 2.1 GHz TSC: far beyond any delivery under KVM,
	 * short enough that TCG (which delivers none) gives up quickly. */
	.set IRQ_DEADLINE, 0x18000000

	.set MASTER_VECTORS, 0x08	/* where SeaBIOS leaves them */
	.set SLAVE_VECTORS, 0x70

	.text
	.globl _start
_start:
	/* Some BIOSes enter at 07c0:0000: make CS match the link origin. */
	ljmp $0, $boot
boot:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $STACK_TOP, %sp
	mov %dl, boot_drive
	/* SeaBIOS's floppy driver needs its timer and IRQ6. */
	sti
	mov $1, %si			/* LBA of the first sector after this one */
	mov $0x07e0, %di		/* its destination segment */
load_next:
	cmp $STAGE2_SECTORS, %si
	ja loaded
	movb $DISK_TRIES, tries
load_try:
	/* LBA -> CHS: sector = lba % 18 + 1, head = lba / 18 % 2, cylinder =
	 * lba / 36; one sector per call so no read crosses a track. */
	mov %si, %ax
	xor %dx, %dx
	mov $SECTORS_PER_TRACK, %bx
	div %bx
	mov %dl, %cl
	inc %cl
	xor %dx, %dx
	mov $HEADS, %bx
	div %bx
	mov %al, %ch
	mov %dl, %dh
	mov boot_drive, %dl
	mov %di, %es
	xor %bx, %bx
	mov $0x0201, %ax
	int $0x13
	jnc load_ok
	decb tries
	jz disk_error
	/* A failed read (motor spin-up, seek error) wants a controller reset. */
	xor %ax, %ax
	mov boot_drive, %dl
	int $0x13
	jmp load_try
load_ok:
	inc %si
	add $512 / 16, %di
	jmp load_next
loaded:
	xor %ax, %ax
	mov %ax, %es
	jmp stage2

disk_error:
	mov $msg_disk_error, %si
	call print
	mov $1, %al
	jmp finish

/* Writes the NUL-terminated string at %si to COM1. */
print:
	push %ax
1:	lodsb
	test %al, %al
	jz 2f
	call putc
	jmp 1b
2:	pop %ax
	ret

/* Writes %al to COM1 once the transmitter can take it. */
putc:
	push %dx
	push %ax
	mov $COM1 + 5, %dx
1:	inb %dx, %al
	test $0x20, %al
	jz 1b
	pop %ax
	mov $COM1, %dx
	outb %al, %dx
	pop %dx
	ret

/* Ends the run: debug-exit value %al, then nothing more happens. */
finish:
	outb %al, $DEBUG_EXIT
	cli
1:	hlt
	jmp 1b

boot_drive:
	.byte 0
tries:
	.byte 0
msg_disk_error:
	.asciz "iohub-boot: disk read failed\r\n"

	.org 510
	.word 0xaa55

/* ---- Everything below is loaded by the boot sector. ---- */
stage2:
	/* No BIOS service from here on: its handlers could reload segment
	 * registers through protected mode and undo unreal mode. */
	cli
	mov $msg_stage2, %si
	call print
	call unreal
	mov $CM_MARKER, %al
	call cmos_read
	cmp $BOOT_MARKER, %al
	je after_reset

	/* First boot. */
	call pci_scan
	cmpw $0, dev_count
	jne 1f
	mov $msg_no_device, %si
	call print
	mov $1, %al
	jmp finish
1:	call report_device
	call check_id
	call setup_pic
	movb $1, via_mmio
	movb $1, timing
	call irq_phase
	mov %ax, irq_mmio
	movb $0, timing
	movb $0, via_mmio
	call irq_phase
	mov %ax, irq_pio
	call report_irqs
	movb $1, via_mmio
	call dma_tests
	call arm_reset_check
	call save_results
	mov $msg_resetting, %si
	call print
	mov $RESET_CONTROL, %dx
	/* SYS_RST | RST_CPU: a hard reset; QEMU's proxy sends DEVICE_RESET. */
	mov $0x06, %al
	outb %al, %dx
2:	hlt
	jmp 2b

after_reset:
	/* Clear the marker first, so a later boot in this QEMU starts over. */
	mov $CM_MARKER, %al
	xor %ah, %ah
	call cmos_write
	mov $msg_second, %si
	call print
	call pci_scan
	cmpw $0, dev_count
	je 1f
	call report_device
	movb $1, via_mmio
	mov $REG_SCRATCH, %bx
	call dev_read
	cmp $0, %eax
	jne 1f
	mov $REG_IRQ_MASK, %bx
	call dev_read
	cmp $0xffffffff, %eax
	jne 1f
	movb $1, reset_ok
1:	call load_results
	/* The verdict needs the values to have been set before the reset. */
	testb $F_ARMED_OK, flags
	jnz 2f
	movb $0, reset_ok
2:	call print_result
	xor %al, %al
	cmpb $0, all_ok
	jne 3f
	mov $1, %al
3:	jmp finish

/*
 * "Unreal mode": a trip through protected mode leaves DS/ES/FS/GS with a
 * 4 GiB limit once back in real mode, so addr32 accesses through a 32-bit
 * register reach BAR0 above 1 MiB. Real-mode segment loads keep the limit.
 */
unreal:
	pushf
	cli
	lgdt gdt_descriptor
	mov %cr0, %eax
	or $1, %al
	mov %eax, %cr0
	jmp 1f				/* serialise the mode switch */
1:	mov $GDT_FLAT_DATA, %bx
	mov %bx, %ds
	mov %bx, %es
	mov %bx, %fs
	mov %bx, %gs
	and $0xfe, %al
	mov %eax, %cr0
	jmp 2f
2:	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %fs
	mov %ax, %gs
	popf
	ret

/* CMOS byte %al -> %al. */
cmos_read:
	outb %al, $CMOS_INDEX
	inb $CMOS_DATA, %al
	ret

/* CMOS byte %al = %ah. */
cmos_write:
	outb %al, $CMOS_INDEX
	mov %ah, %al
	outb %al, $CMOS_DATA
	ret

/* eax = PCI config dword at bus 0, address %ecx (slot << 11 | offset). */
pci_read:
	mov %ecx, %eax
	or $0x80000000, %eax
	mov $0xcf8, %dx
	outl %eax, %dx
	mov $0xcfc, %dx
	inl %dx, %eax
	ret

/*
 * Counts testdevs on bus 0 (function 0 of each slot) and takes the first:
 * its config address, BARs and the interrupt line SeaBIOS routed it to.
 * Enables memory and I/O decoding (and bus mastering, which real hardware
 * would need for DMA), leaving Interrupt Disable (bit 10) as it is.
 */
pci_scan:
	movw $0, dev_count
	xor %ecx, %ecx
1:	call pci_read
	cmp $TESTDEV_VENDOR_DEVICE, %eax
	jne 2f
	incw dev_count
	cmpw $1, dev_count
	jne 2f
	mov %ecx, dev_address
2:	add $1 << 11, %ecx
	cmp $32 << 11, %ecx
	jb 1b
	cmpw $0, dev_count
	je 3f
	mov dev_address, %ecx
	or $0x10, %cl
	call pci_read
	and $0xfffffff0, %eax
	mov %eax, bar0
	mov dev_address, %ecx
	or $0x14, %cl
	call pci_read
	and $0xfffc, %ax
	mov %ax, bar1
	mov dev_address, %ecx
	or $0x3c, %cl
	call pci_read
	mov %al, irq_line
	mov dev_address, %ecx
	or $0x04, %cl
	call pci_read
	or $0x0007, %ax
	mov %ax, %bx
	mov %ecx, %eax
	or $0x80000000, %eax
	mov $0xcf8, %dx
	outl %eax, %dx
	mov $0xcfc, %dx
	mov %bx, %ax
	outw %ax, %dx
3:	ret

/* eax = testdev register %bx, through BAR0 (via_mmio) or BAR1. */
dev_read:
	push %dx
	cmpb $0, via_mmio
	je 1f
	push %esi
	mov bar0, %esi
	movzwl %bx, %edx
	mov (%esi,%edx), %eax
	pop %esi
	pop %dx
	ret
1:	mov bar1, %dx
	add %bx, %dx
	inl %dx, %eax
	pop %dx
	ret

/* testdev register %bx = eax, through BAR0 (via_mmio) or BAR1. */
dev_write:
	push %dx
	cmpb $0, via_mmio
	je 1f
	push %esi
	mov bar0, %esi
	movzwl %bx, %edx
	mov %eax, (%esi,%edx)
	pop %esi
	pop %dx
	ret
1:	mov bar1, %dx
	add %bx, %dx
	outl %eax, %dx
	pop %dx
	ret

/* ID through both BARs proves config decoding and unreal mode work. */
check_id:
	movb $1, via_mmio
	mov $REG_ID, %bx
	call dev_read
	mov %eax, %ecx
	movb $0, via_mmio
	call dev_read
	cmp $TESTDEV_ID, %eax
	jne 1f
	cmp $TESTDEV_ID, %ecx
	jne 1f
	orb $F_ID_OK, flags
	ret
1:	mov $msg_bad_id, %si
	call print
	mov %ecx, %eax
	call print_hex
	mov $msg_slash, %si
	call print
	call print_hex_saved
	ret

/*
 * The 8259 pair re-initialised with SeaBIOS's vector bases, only our line
 * (and the cascade) unmasked so no BIOS handler runs and reloads segment
 * registers behind unreal mode; the line level-triggered in the ELCR
 * because PCI INTx is a shared level.
 */
setup_pic:
	cli
	movzbw irq_line, %cx
	cmp $15, %cx
	ja 9f
	/* Every vector of the line goes to isr. */
	mov %cx, %bx
	add $MASTER_VECTORS, %bx
	cmp $8, %cx
	jb 1f
	mov %cx, %bx
	add $SLAVE_VECTORS - 8, %bx
1:	shl $2, %bx
	movw $isr, (%bx)
	movw $0, 2(%bx)
	mov $0x11, %al			/* ICW1: edge (ELCR decides), ICW4 follows */
	outb %al, $0x20
	outb %al, $0xa0
	mov $MASTER_VECTORS, %al
	outb %al, $0x21
	mov $SLAVE_VECTORS, %al
	outb %al, $0xa1
	mov $0x04, %al			/* slave on IR2 */
	outb %al, $0x21
	mov $0x02, %al
	outb %al, $0xa1
	mov $0x01, %al			/* 8086 mode, normal EOI */
	outb %al, $0x21
	outb %al, $0xa1
	mov $1, %bx
	shl %cl, %bx
	mov $0x4d0, %dx
	inb %dx, %al
	or %bl, %al
	outb %al, %dx
	inc %dx
	inb %dx, %al
	or %bh, %al
	outb %al, %dx
	mov %bx, %ax
	not %ax
	test $0xff00, %bx
	jz 2f
	and $0xfb, %al
2:	outb %al, $0x21
	mov %ah, %al
	outb %al, $0xa1
	movb $1, pic_ready
9:	ret

/*
 * The interrupt handler: acknowledges whatever the device has pending (so
 * the level drops before the EOI makes the remote resample), counts
 * software interrupts (cause bit 0) and, while timing, their latency.
 * An entry with nothing pending is a level left over from an earlier ACK
 * made with interrupts off: it only needs the EOI.
 */
isr:
	pushal
	push %ds
	xor %ax, %ax
	mov %ax, %ds
	rdtsc
	mov %eax, %esi
	mov $REG_IRQ_STATUS, %bx
	call dev_read
	test %eax, %eax
	jz 2f
	mov %eax, %ecx
	mov $REG_IRQ_ACK, %bx
	call dev_write
	test $1, %cl
	jz 2f
	incw irq_got
	cmpb $0, timing
	je 2f
	sub raise_tsc, %esi
	add %esi, cycles_lo
	adcl $0, cycles_hi
	incw timed
2:	mov $0x20, %al
	cmpb $8, irq_line
	jb 3f
	outb %al, $0xa0
3:	outb %al, $0x20
	pop %ds
	popal
	iret

/*
 * Raises IRQS_PER_PHASE interrupts one at a time through the current BAR,
 * each awaited until IRQ_DEADLINE; stops at the first one that does not
 * come, after ACKing it so the line is low again. ax = interrupts taken.
 */
irq_phase:
	movw $0, irq_got
	cmpb $0, pic_ready
	je 9f
	xor %di, %di
1:	cmp $IRQS_PER_PHASE, %di
	jae 9f
	cli
	rdtsc
	mov %eax, raise_tsc
	mov $REG_IRQ_RAISE, %bx
	mov $1, %eax
	call dev_write
	sti
2:	cmp irq_got, %di
	jb 3f
	rdtsc
	sub raise_tsc, %eax
	cmp $IRQ_DEADLINE, %eax
	jb 2b
	cli
	/* Interrupts could still slip in between the check and cli. */
	cmp irq_got, %di
	jb 3f
	mov $REG_IRQ_ACK, %bx
	mov $1, %eax
	call dev_write
	jmp 9f
3:	inc %di
	jmp 1b
9:	cli
	mov irq_got, %ax
	ret

/* Dword %cx of the DMA test pattern -> eax (no two dwords alike). */
pattern:
	movzwl %cx, %eax
	imul $0x01000193, %eax, %eax
	xor $0xa5c3f00f, %eax
	ret

/*
 * Buffer -> guest RAM, then guest RAM -> buffer, 2 KiB each way. Cause
 * bit 1 (DMA done) is masked meanwhile: completion is polled through
 * DMA_STATUS, and an interrupt then would only be noise under KVM.
 */
dma_tests:
	mov $REG_IRQ_MASK, %bx
	mov $1, %eax
	call dev_write
	/* Pattern into the device buffer, stale bytes out of guest RAM. */
	mov bar0, %esi
	add $BUFFER, %esi
	mov $DMA_RAM, %edi
	xor %cx, %cx
1:	call pattern
	mov %eax, (%esi)
	movl $0, (%edi)
	add $4, %esi
	add $4, %edi
	inc %cx
	cmp $BUFFER_SIZE / 4, %cx
	jb 1b
	mov $1, %eax
	call dma_run
	jc 3f
	mov $DMA_RAM, %edi
	xor %cx, %cx
2:	call pattern
	cmp %eax, (%edi)
	jne 3f
	add $4, %edi
	inc %cx
	cmp $BUFFER_SIZE / 4, %cx
	jb 2b
	orb $F_DMA_TO_OK, flags
3:	/* The inverse pattern into guest RAM, back into the buffer. */
	mov $DMA_RAM, %edi
	xor %cx, %cx
4:	call pattern
	not %eax
	mov %eax, (%edi)
	add $4, %edi
	inc %cx
	cmp $BUFFER_SIZE / 4, %cx
	jb 4b
	mov $2, %eax
	call dma_run
	jc 6f
	mov bar0, %esi
	add $BUFFER, %esi
	xor %cx, %cx
5:	call pattern
	not %eax
	cmp %eax, (%esi)
	jne 6f
	add $4, %esi
	inc %cx
	cmp $BUFFER_SIZE / 4, %cx
	jb 5b
	orb $F_DMA_FROM_OK, flags
6:	mov $REG_IRQ_MASK, %bx
	mov $0xffffffff, %eax
	call dev_write
	mov $msg_dma, %si
	call print
	mov flags, %al
	and $(F_DMA_TO_OK | F_DMA_FROM_OK), %al
	call print_hex_byte
	mov $msg_crlf, %si
	call print
	ret

/* DMA_CMD %eax over DMA_RAM, full buffer; CF set unless DMA_STATUS = 0
 * and the done cause (bit 1) was raised, which is then ACKed. */
dma_run:
	push %eax
	mov $REG_DMA_ADDR_LO, %bx
	mov $DMA_RAM, %eax
	call dev_write
	mov $REG_DMA_ADDR_HI, %bx
	xor %eax, %eax
	call dev_write
	mov $REG_DMA_LEN, %bx
	mov $BUFFER_SIZE, %eax
	call dev_write
	pop %eax
	mov $REG_DMA_CMD, %bx
	call dev_write
	mov $REG_DMA_STATUS, %bx
	call dev_read
	test %eax, %eax
	jnz 1f
	mov $REG_IRQ_STATUS, %bx
	call dev_read
	test $2, %al
	jz 1f
	mov $REG_IRQ_ACK, %bx
	mov $2, %eax
	call dev_write
	clc
	ret
1:	stc
	ret

/* Non-reset values into SCRATCH and IRQ_MASK, read back so a failed
 * write is not mistaken for a working reset. */
arm_reset_check:
	movb $1, via_mmio
	mov $REG_SCRATCH, %bx
	mov $SCRATCH_VALUE, %eax
	call dev_write
	mov $REG_IRQ_MASK, %bx
	mov $MASK_VALUE, %eax
	call dev_write
	mov $REG_SCRATCH, %bx
	call dev_read
	cmp $SCRATCH_VALUE, %eax
	jne 1f
	mov $REG_IRQ_MASK, %bx
	call dev_read
	cmp $MASK_VALUE, %eax
	jne 1f
	orb $F_ARMED_OK, flags
1:	ret

save_results:
	mov $CM_DEVICES, %al
	mov dev_count, %ah
	call cmos_write
	mov $CM_IRQ_MMIO, %al
	mov irq_mmio, %ah
	call cmos_write
	mov $CM_IRQ_PIO, %al
	mov irq_pio, %ah
	call cmos_write
	mov $CM_FLAGS, %al
	mov flags, %ah
	call cmos_write
	call cycles_per_irq
	mov %eax, %ebx
	mov $CM_CYCLES, %cl
1:	mov %cl, %al
	mov %bl, %ah
	call cmos_write
	shr $8, %ebx
	inc %cl
	cmp $CM_CYCLES + 4, %cl
	jb 1b
	mov $CM_MARKER, %al
	mov $BOOT_MARKER, %ah
	call cmos_write
	ret

load_results:
	mov $CM_DEVICES, %al
	call cmos_read
	xor %ah, %ah
	mov %ax, dev_count
	mov $CM_IRQ_MMIO, %al
	call cmos_read
	xor %ah, %ah
	mov %ax, irq_mmio
	mov $CM_IRQ_PIO, %al
	call cmos_read
	xor %ah, %ah
	mov %ax, irq_pio
	mov $CM_FLAGS, %al
	call cmos_read
	mov %al, flags
	xor %ebx, %ebx
	mov $CM_CYCLES + 3, %cl
1:	mov %cl, %al
	call cmos_read
	shl $8, %ebx
	mov %al, %bl
	dec %cl
	cmp $CM_CYCLES, %cl
	jge 1b
	mov %ebx, saved_cycles
	ret

/* eax = mean TSC cycles from IRQ_RAISE to the handler, 0 if none came. */
cycles_per_irq:
	movzwl timed, %ecx
	xor %eax, %eax
	test %ecx, %ecx
	jz 1f
	mov cycles_lo, %eax
	mov cycles_hi, %edx
	div %ecx
1:	ret

report_device:
	mov $msg_found, %si
	call print
	mov bar0, %eax
	call print_hex
	mov $msg_bar1, %si
	call print
	movzwl bar1, %eax
	call print_hex
	mov $msg_irq, %si
	call print
	movzbl irq_line, %eax
	call print_dec
	mov $msg_crlf, %si
	call print
	ret

report_irqs:
	mov $msg_irqs, %si
	call print
	movzwl irq_mmio, %eax
	call print_dec
	mov $msg_slash, %si
	call print
	movzwl irq_pio, %eax
	call print_dec
	mov $msg_crlf, %si
	call print
	ret

/* The one machine-readable line; sets all_ok when every check passed. */
print_result:
	movb $1, all_ok
	mov $msg_result, %si
	call print
	movzwl dev_count, %eax
	call print_dec
	cmpw $0, dev_count
	jne 1f
	movb $0, all_ok
	jmp 9f
1:	testb $F_ID_OK, flags
	jnz 2f
	movb $0, all_ok
2:	mov $msg_irq_mmio, %si
	call print
	mov irq_mmio, %ax
	call print_count
	mov $msg_irq_pio, %si
	call print
	mov irq_pio, %ax
	call print_count
	mov $msg_dma_to, %si
	call print
	mov $F_DMA_TO_OK, %al
	call print_flag
	mov $msg_dma_from, %si
	call print
	mov $F_DMA_FROM_OK, %al
	call print_flag
	mov $msg_cycles, %si
	call print
	mov saved_cycles, %eax
	call print_dec
	cmpl $0, saved_cycles
	jne 3f
	movb $0, all_ok
3:	mov $msg_reset, %si
	call print
	cmpb $0, reset_ok
	jne 4f
	movb $0, all_ok
	mov $msg_fail, %si
	jmp 5f
4:	mov $msg_ok, %si
5:	call print
9:	mov $msg_status, %si
	call print
	mov $msg_ok, %si
	cmpb $0, all_ok
	jne 6f
	mov $msg_fail, %si
6:	call print
	mov $msg_crlf, %si
	call print
	ret

/* "%ax/16", clearing all_ok unless every interrupt came. */
print_count:
	cmp $IRQS_PER_PHASE, %ax
	je 1f
	movb $0, all_ok
1:	movzwl %ax, %eax
	call print_dec
	mov $msg_of, %si
	call print
	ret

/* "ok" when flag %al is set, else "fail" (clearing all_ok). */
print_flag:
	mov $msg_ok, %si
	test %al, flags
	jnz 1f
	movb $0, all_ok
	mov $msg_fail, %si
1:	call print
	ret

/* eax in decimal. */
print_dec:
	pushal
	mov $10, %ebx
	xor %cx, %cx
1:	xor %edx, %edx
	div %ebx
	push %dx
	inc %cx
	test %eax, %eax
	jnz 1b
2:	pop %ax
	add $'0', %al
	call putc
	loop 2b
	popal
	ret

/* eax as 0x%08x. */
print_hex:
	pushal
	mov %eax, %ebx
	mov $'0', %al
	call putc
	mov $'x', %al
	call putc
	mov $8, %cx
1:	rol $4, %ebx
	mov %bl, %al
	call print_nibble
	loop 1b
	popal
	ret

/* The ID read through BAR1 again, then the end of the line. */
print_hex_saved:
	mov $REG_ID, %bx
	movb $0, via_mmio
	call dev_read
	call print_hex
	mov $msg_crlf, %si
	call print
	ret

/* al as two hex digits. */
print_hex_byte:
	push %ax
	shr $4, %al
	call print_nibble
	pop %ax
print_nibble:
	push %ax
	and $0x0f, %al
	add $'0', %al
	cmp $'9', %al
	jbe 1f
	add $'a' - '9' - 1, %al
1:	call putc
	pop %ax
	ret

	.set GDT_FLAT_DATA, 8
	.p2align 3
gdt:
	.quad 0
	.quad 0x00cf92000000ffff	/* base 0, limit 4 GiB, data RW */
gdt_descriptor:
	.word gdt_descriptor - gdt - 1
	.long gdt

dev_count:	.word 0
dev_address:	.long 0
bar0:		.long 0
bar1:		.word 0
irq_line:	.byte 0xff
via_mmio:	.byte 0
pic_ready:	.byte 0
timing:		.byte 0
flags:		.byte 0
reset_ok:	.byte 0
all_ok:		.byte 0
irq_got:	.word 0
irq_mmio:	.word 0
irq_pio:	.word 0
timed:		.word 0
raise_tsc:	.long 0
cycles_lo:	.long 0
cycles_hi:	.long 0
saved_cycles:	.long 0

msg_stage2:	.asciz "iohub-boot: stage 2 running\r\n"
msg_second:	.asciz "iohub-boot: second boot, checking the reset\r\n"
msg_no_device:	.asciz "iohub-boot: no testdev\r\nIOHUB-RESULT devices=0 status=fail\r\n"
msg_found:	.asciz "iohub-boot: testdev bar0="
msg_bar1:	.asciz " bar1="
msg_irq:	.asciz " irq="
msg_bad_id:	.asciz "iohub-boot: bad ID mmio/pio "
msg_irqs:	.asciz "iohub-boot: interrupts mmio/pio "
msg_dma:	.asciz "iohub-boot: dma flags 0x"
msg_resetting:	.asciz "iohub-boot: resetting\r\n"
msg_result:	.asciz "IOHUB-RESULT devices="
msg_irq_mmio:	.asciz " irq_mmio="
msg_irq_pio:	.asciz " irq_pio="
msg_of:		.asciz "/16"
msg_dma_to:	.asciz " dma_to_guest="
msg_dma_from:	.asciz " dma_from_guest="
msg_cycles:	.asciz " cycles_per_irq="
msg_reset:	.asciz " reset="
msg_status:	.asciz " status="
msg_ok:		.asciz "ok"
msg_fail:	.asciz "fail"
msg_slash:	.asciz "/"
msg_crlf:	.asciz "\r\n"

stage2_end:
	/* Sectors after the boot sector, for its loader. */
	.set STAGE2_SECTORS, (stage2_end - stage2 + 511) / 512
