# shellcheck shell=bash
# The variables are read by the sourcing scripts.
# shellcheck disable=SC2034,SC2054
# QEMU settings shared by every way of booting the hypervisor (scripts/test,
# scripts/run, scripts/debug). Sourced after scripts/lib/common.sh.

QEMU_BIN=qemu-system-aarch64

# No display or monitor; console on the serial port (added by the caller:
# "-serial stdio" when captured, "-serial mon:stdio" on a terminal).
# Semihosting lets the hypervisor report failures as a QEMU exit status
# (SYS_EXIT_EXTENDED); PSCI SYSTEM_OFF exits with 0. -no-reboot turns a
# reset into an exit so a test never loops.
QEMU_COMMON_ARGS=(
    -display none
    -monitor none
    -no-reboot
    -semihosting-config enable=on,target=native
)

# Defaults for scenario definitions and scripts/run.
DEFAULT_MACHINE=virt,virtualization=on,gic-version=3
DEFAULT_CPU=max
DEFAULT_MEM=1G
DEFAULT_SMP=1

# CPUs for the runs that measure memory types (scripts/run's demo, the
# wc-bench-* and passthrough-* scenarios, scripts/bench's WC runs). QEMU
# 10.0's TCG raises the alignment fault of an unaligned Device access only
# when it runs vCPUs in parallel, that is with two or more CPUs and without
# -icount (qemu/QUIRKS.md); with it the test guest's unaligned probe is a
# second check of the effective type, beside PAR_EL1. The hypervisor runs
# on the boot CPU; QEMU keeps the others powered off.
WC_SMP=2
# The test guest judges its probe when its device tree lists two or more
# CPUs. The hypervisor's guest device tree lists one vCPU whatever the
# machine has, so the runs above tell the guest (after "--" in the
# hypervisor's bootargs) that the machine runs CPUs in parallel.
WC_GUEST_ARGS="wc-unaligned=judge"

# Start of RAM on the virt machine: QEMU places an arm64 Image relative to it.
VIRT_RAM_BASE=0x40000000

# The passthrough demo devices, at fixed slots so command lines can name
# them by BDF: an ivshmem-plain with a 64 MiB RAM-backed prefetchable BAR2
# (00:02.0, 1af4:1110) and a bochs-display with a 16 MiB framebuffer BAR0
# (00:03.0, 1234:1111). The ivshmem memory backend is given separately so a
# scenario can make it file-backed and inspect it afterwards.
IVSHMEM_DEVICE=(-device ivshmem-plain,memdev=hostmem,addr=2)
IVSHMEM_RAM=(-object memory-backend-ram,size=64M,id=hostmem)
BOCHS_DEVICE=(-device bochs-display,addr=3)
DEMO_PASSTHROUGH="pci.passthrough=1af4:1110,1234:1111"
