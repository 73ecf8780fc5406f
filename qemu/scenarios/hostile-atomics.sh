# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="LDXR, STXR, LDADD and CAS on the emulated UART carry no syndrome: each is a data abort at the UART (STXR, with no monitor, may fail instead), and nothing reaches the device"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=exit-hostile -- probe=atomics"
EXPECT_EXIT=0
EXPECT=(
    'GUEST exit-hostile atomics: LDXR -> esr=0x96000010 far=0x9000000 .* ok'
    'GUEST exit-hostile atomics: STXR -> (no-exception par=0x1|esr=0x96000050 far=0x9000000) .* ok'
    'GUEST exit-hostile atomics: LDADD -> esr=0x960000[15]0 far=0x9000000 .* ok'
    'GUEST exit-hostile atomics: CAS -> esr=0x960000[15]0 far=0x9000000 .* ok'
    'GUEST exit-hostile all: hypervisor alive -> yes expect yes ok'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)
# An 'X' on the console would be a store that reached the UART.
REJECT=('panicked at' ' FAIL' 'GUEST unexpected' '^X')
