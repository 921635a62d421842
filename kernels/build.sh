#!/bin/sh
# Build hako's microvm guest kernel (an uncompressed vmlinux with a PVH entry note) from Debian's
# linux-source package, into a cache outside the repository keyed by the config fragment and the
# kernel source version. A cached kernel is reused. Prints the path of the vmlinux on stdout.
#
#   kernels/build.sh            # build or reuse, print the path
#   HAKO_KERNEL_CACHE=/x kernels/build.sh
#   JOBS=4 kernels/build.sh
#
# Needs: apt-get install -y linux-source-6.1 build-essential bc flex bison libelf-dev
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/config-fragment"
cache="${HAKO_KERNEL_CACHE:-/var/cache/hako/kernels}"
jobs="${JOBS:-$(nproc)}"

tarball="${LINUX_SOURCE:-}"
if [ -z "$tarball" ]; then
    tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
    echo "build.sh: no linux source tarball: apt-get install -y linux-source (or set LINUX_SOURCE)" >&2
    exit 1
fi

# The key: the fragment, the tarball's identity (name and size; Debian versions the name) and the
# toolchain. Changing any of them builds a new kernel next to the old ones.
key=$( { cat "$fragment"; basename "$tarball"; stat -c %s "$tarball"; gcc --version | head -n 1; } \
       | sha256sum | cut -c1-16)
out="$cache/vmlinux-$key"
mkdir -p "$cache"

if [ -s "$out" ]; then
    ln -sfn "vmlinux-$key" "$cache/vmlinux"
    echo "$out"
    exit 0
fi

for tool in make gcc bc flex bison; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool missing: apt-get install -y build-essential bc flex bison libelf-dev" >&2; exit 1; }
done

build="$cache/build-$key"
rm -rf "$build"
mkdir -p "$build"
# Remove the half-made tree on failure or interruption; keep nothing but finished kernels.
trap 'rm -rf "$build"' EXIT INT TERM

echo "build.sh: extracting $tarball" >&2
tar -xJf "$tarball" -C "$build" --strip-components=1

cd "$build"
make -s ARCH=x86_64 tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s ARCH=x86_64 olddefconfig >&2

# Every option the fragment asks for must have survived olddefconfig (a missing dependency
# silently drops an option otherwise).
missing=0
grep -E '^CONFIG_[A-Z0-9_]+=' "$fragment" | while IFS= read -r line; do
    opt=${line%%=*}
    val=${line#*=}
    if [ "$val" = "n" ]; then
        if grep -q "^$opt=" .config; then echo "$opt: wanted n, got $(grep "^$opt=" .config)"; fi
    else
        grep -qx "$line" .config || echo "$opt: wanted $val, got $(grep "^$opt=" .config || echo 'not set')"
    fi
done > config-mismatch.txt
if [ -s config-mismatch.txt ]; then
    echo "build.sh: the fragment did not apply cleanly:" >&2
    cat config-mismatch.txt >&2
    exit 1
fi

echo "build.sh: building vmlinux with $jobs jobs (about 5 minutes on 2 cores)" >&2
start=$(date +%s)
make -s ARCH=x86_64 -j"$jobs" vmlinux >&2
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2

cp vmlinux "$out.tmp"
cp .config "$out.config"
mv "$out.tmp" "$out"
ln -sfn "vmlinux-$key" "$cache/vmlinux"
echo "$out"
