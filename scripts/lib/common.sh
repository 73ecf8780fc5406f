# shellcheck shell=bash
# Shared helpers for the scripts in scripts/: repository paths, the host
# dependency check (and installation as root), building the flat images and
# the backtrace symbolizer.
#
# Source it:   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# Or run it:   scripts/lib/common.sh --help

_common_usage() {
    cat <<'EOF'
Usage: scripts/lib/common.sh COMMAND [ARGS]

This file is normally sourced by the other scripts. Run directly it offers:

  deps [run|test|debug|image]     check host tools (install them as root on
                                  Debian/Ubuntu, else print the commands) and
                                  the Rust toolchain, components and targets
                                  of rust-toolchain.toml (added with rustup)
  build                           cargo hv + cargo guest, then flat images in out/
  symbolize [ELF]                 stdin->stdout filter that appends
                                  "<function> at <file>:<line>" to every
                                  "pc=0x.. off=0x.." token (default ELF: the
                                  release hypervisor)
  derive-backports ETC CODENAME   print the <CODENAME>-backports source entry
                                  derived from ETC/sources.list and
                                  ETC/sources.list.d/ (ETC is usually /etc/apt)
  --help                          this text

Functions for sourcing scripts: need_tools, ensure_rust_toolchain,
rust_toolchain_field, build_all, symbolize, derive_backports_entry,
apt_has_suite, plus the variables HV_ROOT, OUT,
HV_TARGET, HV_ELF, GUEST_ELF, HV_BIN, GUEST_BIN.

Environment:
  HV_ASSUME_NONROOT=1   behave as a non-root user (print install commands)
  HV_OS_RELEASE=FILE    read the distribution from FILE, not /etc/os-release
  HV_APT_ETC=DIR        apt configuration dir to derive sources from (/etc/apt)
  HV_PRETEND_MISSING="cmd ..."  treat these commands as absent (for testing)
EOF
}

# ---------------------------------------------------------------------------
# Paths

HV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$HV_ROOT/out"
HV_TARGET=aarch64-unknown-none-softfloat
# Cargo puts its output under CARGO_TARGET_DIR when that is set.
HV_TARGET_DIR="${CARGO_TARGET_DIR:-$HV_ROOT/target}"
HV_ELF="$HV_TARGET_DIR/$HV_TARGET/release/hypervisor"
GUEST_ELF="$HV_TARGET_DIR/$HV_TARGET/release/guest-payload"
HV_BIN="$OUT/hypervisor.bin"
GUEST_BIN="$OUT/guest-payload.bin"
QEMU_MIN_MAJOR=10

# die MESSAGE: print an error and exit 1.
die() {
    echo "error: $*" >&2
    exit 1
}

note() {
    echo "$*" >&2
}

# ---------------------------------------------------------------------------
# Backports source derivation (pure text processing, testable on fixtures)

# Field separator of _apt_entries records (not whitespace, so empty fields
# survive "read").
_FS=$'\x1f'

# Prints "TYPE|URI|SUITES|COMPONENTS|OPTIONS|SIGNED_BY" (separated by $_FS) for
# every binary ("deb") entry found under ETC (sources.list, then
# sources.list.d/*.list and *.sources in name order). TYPE is "line" or
# "deb822". OPTIONS is the one-line "[...]" option block (without brackets);
# SIGNED_BY is the deb822 Signed-By value with continuation lines joined by
# "\n" (a literal backslash-n), empty if absent.
_apt_entries() {
    local etc=$1 f
    local -a files=()
    [[ -f $etc/sources.list ]] && files+=("$etc/sources.list")
    if [[ -d $etc/sources.list.d ]]; then
        while IFS= read -r f; do
            files+=("$f")
        done < <(find "$etc/sources.list.d" -maxdepth 1 -type f \
            \( -name '*.list' -o -name '*.sources' \) | LC_ALL=C sort)
    fi
    for f in "${files[@]}"; do
        case $f in
        *.sources) _apt_entries_deb822 "$f" ;;
        *) _apt_entries_oneline "$f" ;;
        esac
    done
}

_apt_entries_oneline() {
    local line opts rest uri suite comps
    local -a words
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        read -r -a words <<<"$line"
        [[ ${#words[@]} -ge 3 && ${words[0]} == deb ]] || continue
        opts=""
        rest=${line#*deb}
        rest=${rest#"${rest%%[![:space:]]*}"}
        if [[ $rest == \[* ]]; then
            opts=${rest%%]*}
            opts=${opts#[}
            opts=${opts#"${opts%%[![:space:]]*}"}
            opts=${opts%"${opts##*[![:space:]]}"}
            rest=${rest#*]}
        fi
        read -r uri suite comps <<<"$rest"
        [[ -n ${uri:-} && -n ${suite:-} ]] || continue
        printf 'line%s%s%s%s%s%s%s%s%s\n' "$_FS" "$uri" "$_FS" "$suite" "$_FS" \
            "${comps:-}" "$_FS" "$opts" "$_FS"
    done <"$f"
}

_apt_entries_deb822() {
    awk -v OFS="$_FS" '
        function flush() {
            if (types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "" && suites != "" &&
                tolower(enabled) != "no") {
                n = split(uris, u, /[ \t]+/)
                for (i = 1; i <= n; i++)
                    if (u[i] != "")
                        print "deb822", u[i], suites, comps, "", signed
            }
            types = uris = suites = comps = signed = enabled = ""; field = ""
        }
        function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
        /^#/ { next }
        /^[ \t]*\r?$/ { flush(); next }
        /^[ \t]/ {
            if (field == "signed-by") signed = signed "\\n" trim($0)
            next
        }
        {
            key = tolower(substr($0, 1, index($0, ":") - 1))
            val = trim(substr($0, index($0, ":") + 1))
            field = key
            if (key == "types") types = val
            else if (key == "uris") uris = val
            else if (key == "suites") suites = val
            else if (key == "components") comps = val
            else if (key == "signed-by") signed = val
            else if (key == "enabled") enabled = val
        }
        END { flush() }
    ' "$f"
}

# _has_word LIST WORD: true if the whitespace separated LIST contains WORD.
_has_word() {
    local w
    for w in $1; do
        [[ $w == "$2" ]] && return 0
    done
    return 1
}

# apt_has_suite ETC SUITE: true if an enabled "deb" entry already uses SUITE.
apt_has_suite() {
    local etc=$1 suite=$2 kind uri suites rest
    while IFS=$_FS read -r kind uri suites rest; do
        _has_word "$suites" "$suite" && return 0
    done < <(_apt_entries "$etc")
    return 1
}

# derive_backports_entry ETC CODENAME
# Prints the source entry for CODENAME-backports built from the distribution's
# own entry: the first "deb" entry whose suites include CODENAME, whose
# components include "main" and whose URI is not a security archive. The
# result keeps that entry's format: a deb822 paragraph (first line "Types:")
# or a one-line "deb ..." entry, with the same URI and signing key. Returns 1
# if no entry qualifies.
derive_backports_entry() {
    local etc=$1 codename=$2 kind uri suites comps opts signed
    while IFS=$_FS read -r kind uri suites comps opts signed; do
        _has_word "$suites" "$codename" || continue
        _has_word "$comps" main || continue
        case $uri in
        *security* | cdrom:*) continue ;;
        esac
        if [[ $kind == deb822 ]]; then
            printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\n' \
                "$uri" "$codename"
            if [[ -n $signed ]]; then
                # Continuation lines (an inline key) come back indented.
                signed=${signed//\\n/$'\n' }
                [[ $signed == $'\n'* ]] || signed=" $signed"
                printf 'Signed-By:%s\n' "$signed"
            fi
        else
            if [[ -n $opts ]]; then
                printf 'deb [%s] %s %s-backports main\n' "$opts" "$uri" "$codename"
            else
                printf 'deb %s %s-backports main\n' "$uri" "$codename"
            fi
        fi
        return 0
    done < <(_apt_entries "$etc")
    return 1
}

# ---------------------------------------------------------------------------
# Dependency check

# _have CMD: CMD is on PATH (HV_PRETEND_MISSING="cmd ..." hides some, to
# exercise the install paths).
_have() {
    [[ " ${HV_PRETEND_MISSING:-} " != *" $1 "* ]] && command -v "$1" >/dev/null 2>&1
}

_is_root() {
    [[ ${HV_ASSUME_NONROOT:-0} != 1 && $(id -u) -eq 0 ]]
}

# _os_field KEY: value of KEY in os-release (empty if unknown).
_os_field() {
    local file=${HV_OS_RELEASE:-/etc/os-release}
    [[ -r $file ]] || return 0
    (
        # shellcheck disable=SC1090
        . "$file"
        eval "printf '%s' \"\${$1:-}\""
    )
}

# _qemu_major: major version of qemu-system-aarch64, or 0 if absent.
_qemu_major() {
    local v
    _have qemu-system-aarch64 || {
        echo 0
        return
    }
    v=$(qemu-system-aarch64 --version 2>/dev/null | head -n1)
    v=${v#*version }
    v=${v%%.*}
    [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

# _squote STRING: STRING quoted for a POSIX shell with single quotes.
_squote() {
    local q="'\\''"
    printf "'%s'" "${1//\'/$q}"
}

# _apt_candidate_major PKG: major upstream version apt would install, or 0.
_apt_candidate_major() {
    local v
    v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    v=${v#*:}
    v=${v%%.*}
    [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

# llvm_tool NAME: path of an LLVM tool from the rustup llvm-tools component.
llvm_tool() {
    local sysroot f
    sysroot=$(cd "$HV_ROOT" && rustc --print sysroot 2>/dev/null) || return 1
    for f in "$sysroot"/lib/rustlib/*/bin/"$1"; do
        [[ -x $f ]] && {
            echo "$f"
            return 0
        }
    done
    return 1
}

# rust_toolchain_field KEY [FILE]: the value of KEY in the [toolchain] table
# of rust-toolchain.toml, a string or a one-line array, printed as
# space-separated words ("stable"; "rustfmt clippy llvm-tools").
rust_toolchain_field() {
    local key=$1 file=${2:-$HV_ROOT/rust-toolchain.toml}
    awk -v key="$key" '
        /^[ \t]*\[/ { table = $0; gsub(/[][ \t]/, "", table); next }
        table == "toolchain" && $0 ~ "^[ \t]*" key "[ \t]*=" {
            v = substr($0, index($0, "=") + 1)
            sub(/#.*/, "", v)
            gsub(/[][",]/, " ", v)
            gsub(/[ \t]+/, " ", v)
            sub(/^ /, "", v); sub(/ $/, "", v)
            print v
            exit
        }
    ' "$file"
}

# ensure_rust_toolchain
# Makes sure the toolchain rust-toolchain.toml names (or RUSTUP_TOOLCHAIN)
# is installed with its components and targets, and installs what is missing
# through rustup. rustup itself only does that for a toolchain it installs:
# a "stable" that is already there is used as it is, and the build then fails
# with "can't find crate for `core`". Installation needs no root: rustup
# works in the user's home. Prints what it does on stderr; on failure prints
# the command to run on stdout and returns 1. Fast (two rustup queries) when
# everything is present.
ensure_rust_toolchain() {
    local file=$HV_ROOT/rust-toolchain.toml channel tc profile
    local -a comps=() targets=() have=() missing_t=() missing_c=() cmds=()
    local c t line log
    local -a argv
    channel=$(rust_toolchain_field channel "$file")
    profile=$(rust_toolchain_field profile "$file")
    read -r -a comps <<<"$(rust_toolchain_field components "$file")"
    read -r -a targets <<<"$(rust_toolchain_field targets "$file")"
    tc=${RUSTUP_TOOLCHAIN:-${channel:-stable}}

    if ! _have rustup; then
        if _have cargo; then
            # A distribution's Rust: nothing to install with; say what is needed.
            echo "cargo is not from rustup, so the '$tc' toolchain with the targets ${targets[*]} cannot be installed; install rustup (https://rustup.rs) or make sure this Rust has them"
        else
            echo "cargo not found; install rustup with:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . \"\$HOME/.cargo/env\""
        fi
        return 1
    fi

    if ! line=$(cd "$HV_ROOT" && rustup target list --installed --toolchain "$tc" 2>/dev/null); then
        local csv_c csv_t
        csv_c=$(IFS=,; echo "${comps[*]}")
        csv_t=$(IFS=,; echo "${targets[*]}")
        cmds+=("rustup toolchain install $tc --profile ${profile:-minimal}${csv_c:+ --component $csv_c}${csv_t:+ --target $csv_t}")
    else
        mapfile -t have <<<"$line"
        for t in "${targets[@]}"; do
            _has_word "${have[*]}" "$t" || missing_t+=("$t")
        done
        line=$(cd "$HV_ROOT" && rustup component list --installed --toolchain "$tc" 2>/dev/null) || line=""
        mapfile -t have <<<"$line"
        for c in "${comps[@]}"; do
            # Installed components carry the host triple: "clippy-x86_64-...".
            [[ " ${have[*]} " == *" $c-"* ]] || missing_c+=("$c")
        done
        ((${#missing_t[@]})) && cmds+=("rustup target add --toolchain $tc ${missing_t[*]}")
        ((${#missing_c[@]})) && cmds+=("rustup component add --toolchain $tc ${missing_c[*]}")
    fi
    ((${#cmds[@]})) || return 0

    mkdir -p "$OUT/logs"
    log=$OUT/logs/rustup.log
    for c in "${cmds[@]}"; do
        note "rust-toolchain.toml: running $c (log: ${log#"$HV_ROOT"/})"
        read -r -a argv <<<"$c"
        if ! (cd "$HV_ROOT" && "${argv[@]}") >>"$log" 2>&1; then
            tail -n 5 "$log" >&2
            echo "'$c' failed; run it by hand (rust-toolchain.toml names toolchain '$tc', components '${comps[*]}', targets '${targets[*]}')"
            return 1
        fi
    done
}

# need_tools [run|test|debug|image]
# Checks the host tools the given use needs. Missing Debian/Ubuntu packages
# are installed when running as root; otherwise the exact commands are
# printed. Returns non-zero if something is still missing. Fast when all is
# present.
need_tools() {
    local use=${1:-test}
    local -a pkgs=() cmds=() problems=()
    local qemu_major codename id backports="" ok=0

    # "image" (scripts/image) only builds and packs: mkimage and cargo.
    if [[ $use == image ]]; then
        qemu_major=$QEMU_MIN_MAJOR
    else
        qemu_major=$(_qemu_major)
    fi
    ((qemu_major >= QEMU_MIN_MAJOR)) || pkgs+=(qemu-system-arm)
    [[ $use == image ]] || _have dtc || pkgs+=(device-tree-compiler)
    _have mkimage || pkgs+=(u-boot-tools)
    if [[ $use != image ]]; then
        [[ -e /usr/lib/u-boot/qemu_arm64/u-boot.bin ]] || pkgs+=(u-boot-qemu)
        _have aarch64-linux-gnu-addr2line || pkgs+=(binutils-aarch64-linux-gnu)
        # Extracting the Raspberry Pi 4 DTB from Debian's arm64 kernel package.
        _have dpkg-deb || pkgs+=(dpkg)
    fi
    if [[ $use == debug || $use == test ]]; then
        # scripts/test runs the gdb scenario too.
        _have gdb-multiarch || pkgs+=(gdb-multiarch)
    fi
    if [[ $use == test ]]; then
        _have shellcheck || pkgs+=(shellcheck)
    fi
    if [[ $use != image ]]; then
        # Scenario checks and the SVG plotter.
        _have python3 || pkgs+=(python3)
    fi

    if ((${#pkgs[@]})); then
        # Commands are run by bash -c as root, or printed with sudo.
        local sudo="sudo "
        _is_root && sudo=""
        id=$(_os_field ID)
        codename=$(_os_field VERSION_CODENAME)
        if ! command -v apt-get >/dev/null 2>&1 && [[ -z ${HV_OS_RELEASE:-} ]]; then
            problems+=("missing packages (Debian names): ${pkgs[*]}; QEMU must be >= $QEMU_MIN_MAJOR.0")
        else
            local -a other=() qemu_args=()
            local p
            for p in "${pkgs[@]}"; do
                [[ $p == qemu-system-arm ]] || other+=("$p")
            done
            if [[ " ${pkgs[*]} " == *" qemu-system-arm "* ]]; then
                if [[ $id == debian && $codename == bookworm ]]; then
                    # Debian 12 ships QEMU 7.2; 10.x comes from backports.
                    backports=$codename-backports
                    qemu_args=(-t "$backports" qemu-system-arm)
                elif _is_root ||
                    (($(_apt_candidate_major qemu-system-arm) >= QEMU_MIN_MAJOR)); then
                    qemu_args=(qemu-system-arm)
                else
                    problems+=("this distribution's qemu-system-arm is older than $QEMU_MIN_MAJOR.0; install QEMU >= $QEMU_MIN_MAJOR.0 another way")
                fi
            fi
            if [[ -n $backports ]] && ! apt_has_suite "${HV_APT_ETC:-/etc/apt}" "$backports"; then
                local entry file line quoted=""
                if ! entry=$(derive_backports_entry "${HV_APT_ETC:-/etc/apt}" "$codename"); then
                    problems+=("no Debian '$codename' entry in ${HV_APT_ETC:-/etc/apt} to derive $backports from; add a $backports source by hand")
                else
                    file=/etc/apt/sources.list.d/hypervisor-$backports.list
                    [[ $entry == Types:* ]] && file=${file%.list}.sources
                    while IFS= read -r line; do
                        quoted+=" $(_squote "$line")"
                    done <<<"$entry"
                    cmds+=("printf '%s\\n'$quoted | ${sudo}tee $file >/dev/null")
                fi
            fi
            cmds+=("${sudo}apt-get update -qq")
            local inst="${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
            ((${#other[@]})) && cmds+=("$inst ${other[*]}")
            ((${#qemu_args[@]})) && cmds+=("$inst ${qemu_args[*]}")
        fi
    fi

    if ((${#problems[@]} == 0 && ${#cmds[@]})); then
        if _is_root; then
            local c log
            mkdir -p "$OUT/logs"
            log=$OUT/logs/deps-install.log
            note "installing: ${pkgs[*]} (log: ${log#"$HV_ROOT"/})"
            for c in "${cmds[@]}"; do
                if ! bash -c "$c" >>"$log" 2>&1; then
                    tail -n 20 "$log" >&2
                    problems+=("failed: $c")
                    break
                fi
            done
            if ((${#problems[@]} == 0)) && [[ " ${pkgs[*]} " == *" qemu-system-arm "* ]]; then
                qemu_major=$(_qemu_major)
                ((qemu_major >= QEMU_MIN_MAJOR)) ||
                    problems+=("qemu-system-aarch64 is still older than $QEMU_MIN_MAJOR.0 after installing")
            fi
        else
            note "missing host packages: ${pkgs[*]}"
            note "install them with:"
            local c
            for c in "${cmds[@]}"; do
                note "  $c"
            done
            ok=1
        fi
    fi

    # Rust: the toolchain, components and targets rust-toolchain.toml names.
    local rust_problem
    if ! rust_problem=$(ensure_rust_toolchain); then
        problems+=("$rust_problem")
    elif ! llvm_tool llvm-objcopy >/dev/null; then
        problems+=("llvm-objcopy not found in the rustup sysroot; run: rustup component add llvm-tools")
    fi

    if ((${#problems[@]})); then
        local p
        for p in "${problems[@]}"; do
            note "error: $p"
        done
        return 1
    fi
    return $ok
}

# ---------------------------------------------------------------------------
# Build

# build_all: release builds of both crates, then the flat images in out/.
build_all() {
    local objcopy
    (cd "$HV_ROOT" && cargo hv && cargo guest) || return 1
    objcopy=$(llvm_tool llvm-objcopy) || {
        note "error: llvm-objcopy not found; run: rustup component add llvm-tools"
        return 1
    }
    mkdir -p "$OUT"
    "$objcopy" -O binary "$HV_ELF" "$HV_BIN" || return 1
    "$objcopy" -O binary "$GUEST_ELF" "$GUEST_BIN" || return 1
    note "built ${HV_BIN#"$HV_ROOT"/} ($(stat -c %s "$HV_BIN") bytes)," \
        "${GUEST_BIN#"$HV_ROOT"/} ($(stat -c %s "$GUEST_BIN") bytes)"
}

# ---------------------------------------------------------------------------
# Backtrace symbolizer

# _addr2line_cmd: llvm-addr2line from the rustup sysroot or the host, else the
# aarch64 binutils one.
_addr2line_cmd() {
    local t
    t=$(llvm_tool llvm-addr2line 2>/dev/null) && {
        echo "$t"
        return
    }
    for t in llvm-addr2line aarch64-linux-gnu-addr2line; do
        _have "$t" && {
            command -v "$t"
            return
        }
    done
    return 1
}

# symbolize [ELF]
# Line-buffered filter: every "pc=0x<hex> off=0x<hex>" token gets
# " <function> at <file>:<line>" appended to its line (inlined frames follow
# as "; inlined into <function> at <file>:<line>"). The ELF is linked at 0,
# so "off" is the ELF address. One addr2line process serves all lookups.
# Without addr2line or the ELF the input passes through unchanged.
symbolize() {
    local elf=${1:-$HV_ELF} a2l line rest off out sym loc first cr
    local sentinel=0xffffffffffffffff
    local -a offs
    if ! a2l=$(_addr2line_cmd) || [[ ! -f $elf ]]; then
        cat
        return
    fi
    coproc A2L { stdbuf -oL "$a2l" -a -f -C -i -e "$elf" 2>/dev/null; }
    local to=${A2L[1]} from=${A2L[0]}
    while IFS= read -r line || [[ -n $line ]]; do
        offs=()
        rest=$line
        while [[ $rest =~ pc=0x[0-9a-fA-F]+[[:space:]]+off=(0x[0-9a-fA-F]+) ]]; do
            offs+=("${BASH_REMATCH[1]}")
            rest=${rest#*"${BASH_REMATCH[0]}"}
        done
        if ((${#offs[@]} == 0)); then
            printf '%s\n' "$line"
            continue
        fi
        cr=""
        if [[ $line == *$'\r' ]]; then
            line=${line%$'\r'}
            cr=$'\r'
        fi
        out=$line
        for off in "${offs[@]}"; do
            printf '%s\n%s\n' "$off" "$sentinel" >&"$to"
            # Output: an address line, then function/location pairs.
            IFS= read -r _ <&"$from"
            first=1
            while IFS= read -r sym <&"$from"; do
                [[ $sym == 0x* ]] && break
                IFS= read -r loc <&"$from"
                if ((first)); then
                    out+=" $sym at $loc"
                    first=0
                else
                    out+="; inlined into $sym at $loc"
                fi
            done
            # The sentinel's own (unknown) function and location.
            IFS= read -r _ <&"$from"
            IFS= read -r _ <&"$from"
        done
        printf '%s%s\n' "$out" "$cr"
    done
    exec {to}>&-
    wait "$A2L_PID" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Direct invocation

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1:-} in
    -h | --help | "") _common_usage ;;
    deps) need_tools "${2:-test}" ;;
    build) need_tools test && build_all ;;
    symbolize) symbolize "${2:-$HV_ELF}" ;;
    derive-backports)
        [[ $# -eq 3 ]] || die "usage: $0 derive-backports ETC CODENAME"
        derive_backports_entry "$2" "$3"
        ;;
    *) die "unknown command '$1' (see --help)" ;;
    esac
fi
