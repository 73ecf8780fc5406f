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

# Start of RAM on the virt machine: QEMU places an arm64 Image relative to it.
VIRT_RAM_BASE=0x40000000
