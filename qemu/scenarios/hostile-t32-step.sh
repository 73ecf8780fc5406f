# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="16-bit T32 instructions the hypervisor completes (WFI under HCR_EL2.TWI, an emulated LDR, an LDREQ in an ITE block) step by 2 bytes and advance ITSTATE"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=exit-hostile -- probe=t32-step"
EXPECT_EXIT=0
EXPECT=(
    'GUEST exit-hostile t32-step: WFI, ADDS, ADDS, SVC: r0 -> 0x2 expect 0x2 ok'
    'GUEST exit-hostile t32-step: LDR r2 from UARTPeriphID0, ADDS, ADDS, SVC: r2 r0 -> 0x11 0x2 expect 0x11 0x2 ok'
    'GUEST exit-hostile t32-step: CMP, ITE EQ, LDREQ r2 from UARTPeriphID0, ADDNE #1, ADDS #2, SVC: r2 r0 -> 0x11 0x2 expect 0x11 0x2 ok'
    'GUEST exit-hostile t32-step: WFIs the hypervisor completed \(HCR_EL2.TWI\) -> 0x1 expect 0x1 ok'
    'GUEST exit-hostile all: hypervisor alive -> yes expect yes ok'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)
REJECT=('panicked at' ' FAIL' 'GUEST unexpected')
