# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="a 32-bit EL0 task (T32, A32) loads from a hole, branches to one, LDMs from the UART: each exception reaches the guest at VBAR_EL1+0x600 with the lower-EL syndrome; the VM goes on"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=exit-hostile -- probe=aarch32"
EXPECT_EXIT=0
EXPECT=(
    'GUEST exit-hostile aarch32: T32 SVC returns to EL1 -> 0x11 expect 0x11 ok'
    'GUEST exit-hostile aarch32: T32 LDR from a hole -> esr=0x92000010 far=0xe0001000 .* ok'
    'GUEST exit-hostile aarch32: A32 LDR from a hole -> esr=0x92000010 far=0xe0001000 .* ok'
    'GUEST exit-hostile aarch32: T32 BX to a hole -> esr=0x82000010 far=0xe0003000 .* ok'
    'GUEST exit-hostile aarch32: T32 LDM from the UART \(no syndrome\) -> esr=0x92000010 far=0xe0002000 .* ok'
    'GUEST exit-hostile all: hypervisor alive -> yes expect yes ok'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)
REJECT=('panicked at' ' FAIL' 'GUEST unexpected')
