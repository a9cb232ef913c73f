#!/usr/bin/env bash
# Install the Debian packages some tests need, if they are missing.
#
#   tests/install-debs.sh LOGFILE PACKAGE...
#
# Exit codes: 0 all installed, 3 they cannot be installed here (not root, no apt-get, no
# network): the tests that need them skip, saying so. apt's output goes to LOGFILE.

say() { echo "install-debs.sh: $*" >&2; }
cannot_install() { say "CANNOT INSTALL: $*"; exit 3; }

log=$1
shift
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" -eq 0 ] || cannot_install "packages missing (${missing[*]}) and not root"
command -v apt-get >/dev/null || cannot_install "packages missing (${missing[*]}), no apt-get"
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when the install cannot find the packages as they are.
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    apt-get update -qq >>"$log" 2>&1 \
        || { tail -5 "$log" >&2; cannot_install "apt-get update failed (no network?)"; }
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
        || { tail -5 "$log" >&2; cannot_install "apt-get install ${missing[*]} failed"; }
fi
