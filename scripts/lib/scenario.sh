# shellcheck shell=bash
# The scenario variables are read by the sourcing scripts.
# shellcheck disable=SC2034
# Loading and booting scenario definitions (qemu/scenarios/<name>.sh).
# Sourced after scripts/lib/common.sh.
#
# A scenario file is a bash fragment that sets (defaults in brackets):
#   DESCRIPTION   one line for --list                         [""]
#   TIMEOUT       seconds before scripts/test gives up        [30]
#   MACHINE       -M value        [virt,virtualization=on,gic-version=3]
#   CPU MEM SMP   -cpu, -m, -smp                              [max 1G 1]
#   KERNEL        -kernel image                               [out/hypervisor.bin]
#   ELF           symbols for the backtrace symbolizer        [release hypervisor ELF]
#   INITRD        -initrd file, optional                      [""]
#   APPEND        -append bootargs for the hypervisor         [""]
#   EXTRA_ARGS=() more QEMU arguments                         [()]
#   EXPECT_EXIT   QEMU exit status: a number, or "nonzero"    [0]
#   EXPECT=()     extended regexes that must all appear in the console log
#   REJECT=()     extended regexes that must not appear       [("panicked at")]
#   COMMAND=()    run this instead of QEMU (e.g. scripts/debug --batch);
#                 its output is the log and its status the exit status [()]
# and may define:
#   prepare()     run before QEMU (e.g. to derive an image and set KERNEL)
#   check()       extra checks; $1 is the console log; non-zero return fails
#                 the scenario, its output is the reason
# The files may use $HV_ROOT, $OUT, $HV_BIN, $GUEST_BIN, $HV_ELF and the
# DEFAULT_* values of qemu/machines/common.sh.

# shellcheck source=qemu/machines/common.sh
source "$HV_ROOT/qemu/machines/common.sh"

SCENARIO_DIR=$HV_ROOT/qemu/scenarios

# scenario_names: every scenario, sorted.
scenario_names() {
    local f
    for f in "$SCENARIO_DIR"/*.sh; do
        [[ -e $f ]] || continue
        f=${f##*/}
        echo "${f%.sh}"
    done | LC_ALL=C sort
}

scenario_exists() {
    [[ -f $SCENARIO_DIR/$1.sh ]]
}

# scenario_load NAME: reset the variables to their defaults, then source the
# definition.
scenario_load() {
    local name=$1
    scenario_exists "$name" || {
        note "error: no scenario '$name' in ${SCENARIO_DIR#"$HV_ROOT"/}"
        return 1
    }
    DESCRIPTION=""
    TIMEOUT=30
    MACHINE=$DEFAULT_MACHINE
    CPU=$DEFAULT_CPU
    MEM=$DEFAULT_MEM
    SMP=$DEFAULT_SMP
    KERNEL=$HV_BIN
    ELF=$HV_ELF
    INITRD=""
    APPEND=""
    EXTRA_ARGS=()
    EXPECT_EXIT=0
    EXPECT=()
    REJECT=("panicked at")
    COMMAND=()
    unset -f prepare check
    # shellcheck disable=SC1090
    source "$SCENARIO_DIR/$name.sh"
}

# scenario_description NAME: its DESCRIPTION (in a subshell).
scenario_description() {
    (scenario_load "$1" >/dev/null 2>&1 && printf '%s' "$DESCRIPTION")
}

# qemu_command SERIAL: fills the array QEMU_CMD from the scenario variables;
# SERIAL is the -serial value (stdio, mon:stdio, file:...).
qemu_command() {
    QEMU_CMD=("$QEMU_BIN" "${QEMU_COMMON_ARGS[@]}" -serial "$1"
        -M "$MACHINE" -cpu "$CPU" -m "$MEM" -smp "$SMP"
        -kernel "$KERNEL")
    [[ -n $INITRD ]] && QEMU_CMD+=(-initrd "$INITRD")
    [[ -n $APPEND ]] && QEMU_CMD+=(-append "$APPEND")
    QEMU_CMD+=("${EXTRA_ARGS[@]}")
}

# image_load_address IMAGE: where QEMU's virt machine places an arm64 Image
# (hw/arm/boot.c, load_aarch64_image): with the "ARM\x64" magic at byte 56
# and a non-zero image_size (byte 16) it loads at RAM base + text_offset
# (byte 8), 2 MiB higher if text_offset is below 4 KiB (the size reserved
# for its boot stub at the start of RAM); otherwise at RAM base + 0x80000.
image_load_address() {
    local img=$1 magic text_offset image_size off
    magic=$(od -An -tx1 -j56 -N4 "$img" 2>/dev/null | tr -d ' \n')
    text_offset=$(od -An -tu8 -j8 -N8 "$img" 2>/dev/null | tr -d ' \n')
    image_size=$(od -An -tu8 -j16 -N8 "$img" 2>/dev/null | tr -d ' \n')
    if [[ $magic == 41524d64 && ${image_size:-0} != 0 ]]; then
        off=$text_offset
        ((off < 4096)) && off=$((off + 0x200000))
    else
        off=$((0x80000))
    fi
    printf '0x%x\n' $((VIRT_RAM_BASE + off))
}

# image_sum IMAGE: "image-sum=<bytes>:<FNV-1a 64>" for the test guest's
# `test=image`: the checksum of IMAGE's first bytes up to the end of the
# guest's code (__text_end in its ELF), which its own relocations never
# change, so the copy the guest runs from must hold the same bytes.
image_sum() {
    local img=$1 nm len
    nm=$(llvm_tool llvm-nm) || return 1
    len=$("$nm" "$GUEST_ELF" | awk '$3 == "__text_end" { print $1 }')
    [[ -n $len ]] || return 1
    python3 - "$img" "$((16#$len))" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()[: int(sys.argv[2])]
h = 0xCBF29CE484222325
for b in data:
    h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
print(f"image-sum={len(data):#x}:{h:#x}")
PY
}
