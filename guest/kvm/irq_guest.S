/*
 * iohub KVM harness guest: a 16-bit real-mode program loaded at 0x1000 by
 * lib/kvm/machine.ts. It programs the in-kernel 8259 pair, makes one IRQ
 * level-triggered (ELCR), waits for interrupts with sti;hlt and handles
 * them: counts, optionally reports each one, talks to an iohub-testdev
 * through its I/O or memory BAR (reads IRQ_STATUS, ACKs with IRQ_ACK) and
 * EOIs. One binary serves every test: what it does comes from the
 * parameter block at 0x500, written by the harness before the run. The
 * layout is mirrored by IrqGuestParams in lib/kvm/irq_guest.ts.
 *
 * Harness ports (exits to the harness, never to a device):
 *   0xf0 REPORT (out 16): the delivery count, once per delivery (F_REPORT)
 *   0xf2 READY  (out 16): PIC, IVT and line set up; interrupts may come
 *   0xf4 DONE   (out 16): `count` interrupts completed; value = deliveries
 *   0xf8 FAIL   (out 16): something went wrong; value = reason code
 *   0xfc KICK   (out 16): the NMI handler ran (watchdog / stop request)
 * After DONE the harness stops; the next run resumes and re-reads the
 * parameters (a new IRQ line, a larger count...), keeping the counters.
 */
	.code16

	.set PARAMS, 0x500
	.set P_IRQ, PARAMS + 0		/* u8: PIC line 0-15 (not 2) */
	.set P_FLAGS, PARAMS + 1	/* u8: F_* below */
	.set P_COUNT, PARAMS + 2	/* u16: interrupts to complete */
	.set P_HOLD, PARAMS + 4		/* u16: EOIs without ACK per interrupt */
	.set P_IOBASE, PARAMS + 6	/* u16: testdev BAR1 port base */
	.set P_MMIO, PARAMS + 8		/* u32: testdev BAR0 base, < 1 MiB */
	.set P_DELIVERED, PARAMS + 12	/* u16 out: handler entries */
	.set P_COMPLETED, PARAMS + 14	/* u16 out: interrupts completed */
	.set P_SPURIOUS, PARAMS + 16	/* u16 out: entries with IRQ_STATUS 0 */
	.set P_HELD, PARAMS + 18	/* u16 out: EOIs without ACK, current one */
	.set P_RAISED, PARAMS + 20	/* u16 out: IRQ_RAISE writes made */
	.set P_KICKS, PARAMS + 22	/* u16 out: NMIs taken */

	.set F_PIO, 0x01		/* device through BAR1 (port I/O) */
	.set F_MMIO, 0x02		/* device through BAR0 (MMIO) */
	.set F_SELF_RAISE, 0x04		/* write IRQ_RAISE for each interrupt */
	.set F_REPORT, 0x08		/* out REPORT on every delivery */
	.set F_CLI_HALT, 0x10		/* never enable interrupts (watchdog test) */
	.set F_EDGE, 0x20		/* leave the line edge-triggered */

	.set PORT_REPORT, 0xf0
	.set PORT_READY, 0xf2
	.set PORT_DONE, 0xf4
	.set PORT_FAIL, 0xf8
	.set PORT_KICK, 0xfc

	.set REG_ID, 0x00
	.set REG_IRQ_STATUS, 0x08
	.set REG_IRQ_RAISE, 0x0c
	.set REG_IRQ_ACK, 0x10
	.set TESTDEV_ID, 0x10b10001
	.set FAIL_BAD_ID, 1

	.set MASTER_BASE, 0x20		/* vectors 0x20-0x27 */
	.set SLAVE_BASE, 0x28		/* vectors 0x28-0x2f */

	.text
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x8000, %sp
	/* NMI (vector 2): the harness's watchdog and stop requests. */
	movw $nmi, 2 * 4
	movw $0, 2 * 4 + 2
	/* ICW1-4 on both PICs: edge by default, cascade on IR2, 8086 mode. */
	mov $0x11, %al
	out %al, $0x20
	out %al, $0xa0
	mov $MASTER_BASE, %al
	out %al, $0x21
	mov $SLAVE_BASE, %al
	out %al, $0xa1
	mov $0x04, %al
	out %al, $0x21
	mov $0x02, %al
	out %al, $0xa1
	mov $0x01, %al
	out %al, $0x21
	out %al, $0xa1
	/* Every PIC vector goes to the one handler, so moving the line to
	 * another IRQ needs only new mask and ELCR bits. */
	mov $MASTER_BASE * 4, %di
	mov $16, %cx
1:	movw $isr, (%di)
	movw $0, 2(%di)
	add $4, %di
	loop 1b

restart:
	cli
	/* ELCR: only the chosen line is level-triggered (none with F_EDGE). */
	movzbw P_IRQ, %cx
	mov $1, %bx
	shl %cl, %bx
	mov %bx, %ax
	testb $F_EDGE, P_FLAGS
	jz 1f
	xor %ax, %ax
1:	mov $0x4d0, %dx
	out %al, %dx
	inc %dx
	mov %ah, %al
	out %al, %dx
	/* IMR: unmask the line, and the cascade when it is on the slave. */
	mov %bx, %ax
	not %ax
	test $0xff00, %bx
	jz 2f
	and $0xfb, %al
2:	out %al, $0x21
	mov %ah, %al
	out %al, $0xa1
	/* With a device, check its ID first: proves the BAR path works. */
	testb $(F_PIO | F_MMIO), P_FLAGS
	jz ready
	mov $REG_ID, %bx
	call dev_read
	cmp $TESTDEV_ID, %eax
	je ready
	mov $FAIL_BAD_ID, %ax
	out %ax, $PORT_FAIL
	jmp restart
ready:
	/* Until now an interrupt could be lost to the PIC's initialisation:
	 * the harness raises nothing before this. */
	mov P_DELIVERED, %ax
	out %ax, $PORT_READY

wait:
	/* cli until hlt: sti's one-instruction shadow makes sti;hlt atomic,
	 * so an interrupt cannot slip in between the check and the halt. */
	cli
	testb $F_CLI_HALT, P_FLAGS
	jnz hang
	mov P_COMPLETED, %ax
	cmp P_COUNT, %ax
	jae done
	testb $F_SELF_RAISE, P_FLAGS
	jz 3f
	cmp P_RAISED, %ax
	jne 3f
	incw P_RAISED
	mov $REG_IRQ_RAISE, %bx
	mov $1, %eax
	call dev_write
3:	sti
	hlt
	jmp wait

hang:
	/* Interrupts stay off; after an NMI, look at the flags again. */
	hlt
	jmp wait

done:
	mov P_DELIVERED, %ax
	out %ax, $PORT_DONE
	jmp restart

/* The interrupt handler for every PIC vector. */
isr:
	pushal
	incw P_DELIVERED
	testb $F_REPORT, P_FLAGS
	jz 1f
	mov P_DELIVERED, %ax
	out %ax, $PORT_REPORT
1:	testb $(F_PIO | F_MMIO), P_FLAGS
	jz no_device
	mov $REG_IRQ_STATUS, %bx
	call dev_read
	test %eax, %eax
	jnz 2f
	/* The line was still high from before a reset or ACK: nothing to
	 * acknowledge, the interrupt is over. */
	incw P_SPURIOUS
	jmp complete
2:	mov P_HELD, %cx
	cmp P_HOLD, %cx
	jae ack
	/* EOI without ACK: the level stays high, so the remote re-asserts
	 * on the resample and the handler runs again. */
	incw P_HELD
	jmp eoi
ack:	mov $REG_IRQ_ACK, %bx
	call dev_write
	movw $0, P_HELD
	jmp complete
no_device:
complete:
	incw P_COMPLETED
eoi:	mov $0x20, %al
	cmpb $8, P_IRQ
	jb 3f
	out %al, $0xa0
3:	out %al, $0x20
	popal
	iret

nmi:
	push %ax
	incw P_KICKS
	mov P_KICKS, %ax
	out %ax, $PORT_KICK
	pop %ax
	iret

/* eax = testdev register %bx, through BAR1 or BAR0 per P_FLAGS. */
dev_read:
	testb $F_MMIO, P_FLAGS
	jnz 1f
	mov P_IOBASE, %dx
	add %bx, %dx
	inl (%dx), %eax
	ret
1:	push %es
	call mmio_segment
	mov %es:(%bx), %eax
	pop %es
	ret

/* testdev register %bx = eax. */
dev_write:
	testb $F_MMIO, P_FLAGS
	jnz 1f
	mov P_IOBASE, %dx
	add %bx, %dx
	outl %eax, (%dx)
	ret
1:	push %es
	call mmio_segment
	mov %eax, %es:(%bx)
	pop %es
	ret

/* es = the real-mode segment of BAR0 (base / 16). */
mmio_segment:
	push %eax
	mov P_MMIO, %eax
	shr $4, %eax
	mov %ax, %es
	pop %eax
	ret
