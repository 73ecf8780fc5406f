# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

# -cpu max advertises SVE, SME, a PMU, SPE, AMU and MTE: the guest must see
# none of them in its ID registers (HCR_EL2.TID3, hypervisor/src/vm/sysreg.rs),
# get RAZ/WI debug registers with a working OS lock, and UNDEF for the
# hidden ones, each register logged once by the hypervisor.
DESCRIPTION="the guest reads sanitized ID registers, RAZ/WI debug registers and UNDEFs for hidden PMU/SVE/AMU"
TIMEOUT=30
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=sysregs"
EXPECT_EXIT=0
EXPECT=(
    'GUEST sysregs: ID_AA64PFR0_EL1 shows no SVE, AMU, MPAM or EL2: ok'
    'GUEST sysregs: ID_AA64DFR0_EL1 shows debug but no PMU, SPE or trace: ok'
    'GUEST sysregs: MDSCR_EL1 is RAZ/WI: ok'
    'GUEST sysregs: OSLAR_EL1 1 sets OSLSR_EL1.OSLK: ok'
    'GUEST sysregs: ZCR_EL1 is UNDEFINED: ok'
    'guest: MRS X[0-9]+, S3_3_C9_C12_0 at pc 0x[0-9a-f]+ is not given to guests: UNDEF'
    '\[guest\] GUEST result: PASS'
    'vm: the guest powered off'
)
REJECT=('panicked at' 'GUEST sysregs: .*: FAIL')

check() {
    local n
    n=$(grep -c 'S3_3_C9_C12_0 at pc .* UNDEF' "$1" || true)
    [[ $n == 1 ]] || {
        echo "PMCR_EL0 (read twice) logged $n times, expected once"
        return 1
    }
    n=$(grep -c 'GUEST sysregs: .*: ok' "$1" || true)
    ((n == 12)) || {
        echo "$n sysreg checks passed, expected 12"
        return 1
    }
}
