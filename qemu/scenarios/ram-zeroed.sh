# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="guest RAM is zeroed block by block on first touch: host memory poisoned before boot reads as zero in the guest"
TIMEOUT=60
INITRD=$GUEST_BIN
SMP=2
APPEND="guest.bootargs=test=ramzero"
# 128 MiB of 0xa5 written by QEMU's loader before any CPU runs, where the
# guest's RAM lands (checked below against the hypervisor's log).
POISON_FILE=$OUT/scenarios/ram-zeroed/poison.bin
POISON_ADDR=0x50000000
POISON_SIZE=$((128 << 20))
EXTRA_ARGS=(-device "loader,file=$POISON_FILE,addr=$POISON_ADDR,force-raw=on")
EXPECT_EXIT=0
EXPECT=(
    'vm: guest RAM: 2 of 128 2 MiB blocks zeroed and mapped now, the rest on first touch'
    'GUEST ramzero blocks=126 words=504 nonzero=0 '
    '\[guest\] GUEST result: PASS'
    'vm: the guest powered off'
)
REJECT=('panicked at' 'GUEST ramzero: 0x')

prepare() {
    mkdir -p "${POISON_FILE%/*}"
    if [[ ! -f $POISON_FILE ]]; then
        head -c "$POISON_SIZE" /dev/zero | tr '\0' '\245' >"$POISON_FILE"
    fi
}

# The poisoned range must lie inside the guest's RAM, or the test proves
# nothing: the log says where guest RAM is ("... (PA 0x...)").
check() {
    local pa
    pa=$(grep -oE 'RAM at IPA 0x[0-9a-f]+ \(PA 0x[0-9a-f]+\)' "$1" | grep -oE '\(PA 0x[0-9a-f]+' | head -n1)
    pa=${pa#(PA }
    if [[ -z $pa ]]; then
        echo "no guest RAM address in the log"
        return 1
    fi
    if ((pa > POISON_ADDR || pa + (256 << 20) < POISON_ADDR + POISON_SIZE)); then
        echo "guest RAM at $pa does not cover the poisoned [$POISON_ADDR, +$POISON_SIZE)"
        return 1
    fi
}
