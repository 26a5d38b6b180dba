#!/usr/bin/env bash
# Install clgrad into a temporary root, then build and run an outside program with
#   cc app.c $(pkg-config --cflags --libs clgrad)
# usage: install-test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
DESTDIR="$root" meson install -C "$build" --no-rebuild --quiet
pc=$(find "$root" -name clgrad.pc -print -quit)
[ -n "$pc" ] || { echo "clgrad.pc was not installed" >&2; exit 1; }
# the user's own PKG_CONFIG_PATH (where CLBlast may live) still counts, after clgrad's
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_SYSROOT_DIR="$root"
libdir=$(pkg-config --variable=libdir clgrad)
# pkgconf prefixes variables with the sysroot, pkg-config does not
case "$libdir" in "$root"/*) ;; *) libdir="$root$libdir" ;; esac
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$root/app" "$src/tests/install/app.c" $(pkg-config --cflags --libs clgrad) -lm
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$root/app"
