# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="a flat-binary guest (no Image header) runs from the start of RAM with its code intact (test=image: placement and checksum)"
TIMEOUT=40
EXPECT_EXIT=0
EXPECT=(
    'vm: .* flat binary of [0-9]+ KiB at 0x40000000, entry 0x40000000'
    '\[guest\] GUEST image: flat binary loaded at 0x40000000, expected 0x40000000 .* ok'
    '\[guest\] GUEST image: FNV-1a of the first [0-9]+ bytes (0x[0-9a-f]+), expected \1 ok'
    '\[guest\] GUEST result: PASS'
    'vm: the guest powered off after [0-9]+ exits'
    'stopping: system off'
)

# The test guest with its Image magic cleared: its first instruction still
# branches over the header, so it runs as a flat binary from offset 0.
prepare() {
    local img=$OUT/guest-flat.bin
    cp "$GUEST_BIN" "$img"
    printf '\x00\x00\x00\x00' | dd of="$img" bs=1 seek=56 count=4 conv=notrunc status=none
    INITRD=$img
    APPEND="guest.bootargs=test=image -- $(image_sum "$img")" || return 1
}
