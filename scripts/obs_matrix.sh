#!/usr/bin/env bash
# Run the test suite against newer OBS Studio releases than the host's, each in a Debian root made by debootstrap:
#
#   bash scripts/obs_matrix.sh [--build-only] [--rebuild] ROOT... [-- PYTEST ARGS]
#
# ROOT is a Debian suite or the OBS version it ships: `trixie` or `30.2` (Debian 13: OBS 30.2, Python 3.13),
# `forky` or `32.2` (Debian testing: OBS 32.2, Python 3.14). Without pytest arguments it runs the OBS, installer and
# CLI tests; with them, exactly what they say (`-- -m obs`, `-- tests/test_cli.py -k audio`).
#
# A root is built once and cached in $OBS_RVM_ROOTS (default /var/cache/obs-rvm/roots), keyed by its suite and
# package list, so changing the list below builds a fresh one. Each run bind-mounts /proc, /sys, /dev, /dev/pts,
# /dev/shm, this checkout and the shared test data at the same paths inside the root, copies the machine's CA bundle
# and pip settings in (pip behaves as on the host), installs this checkout (+[test]) into a venv made with the
# root's own Python, runs pytest there, and unmounts everything again, also on failure or Ctrl-C.
#
# Needs root (debootstrap, chroot, mount) and Debian's archive ($OBS_RVM_DEBIAN_MIRROR, default deb.debian.org).
# Exit status: 0 all passed; 1 a test or a step failed; 2 bad usage; 3 Debian's archive could not be reached, so a
# root that is not cached yet could not be built (nothing was tested there).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${OBS_RVM_ROOTS:-/var/cache/obs-rvm/roots}"
MIRROR="${OBS_RVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=(obs-studio xvfb xdotool ffmpeg python3-venv libgl1 libgl1-mesa-dri libglib2.0-0 procps)
# Debian testing's Mesa (26) runs WebGPU on its software Vulkan driver, lavapipe: tests/test_webgpu.py keys frames
# with the WebGPU execution provider there (Debian 13's Mesa has no adapter the provider accepts).
FORKY_PACKAGES=(mesa-vulkan-drivers libvulkan1)
DEFAULT_TESTS=(tests/test_obs_filter.py tests/test_obs_script.py tests/test_obs_worker.py tests/test_installer.py
               tests/test_install_parts.py tests/test_cli.py
               tests/test_obs_live.py::test_still_picture_equals_the_pipelines_composite_in_every_mode
               tests/test_obs_soak.py::test_removal_storm_never_crashes_obs tests/test_webgpu.py
               tests/test_obs_cameras.py tests/test_turns.py)
VENV=/opt/obs-rvm-venv  # inside the root

say() { echo "obs_matrix: $*" >&2; }
die() { say "error: $*"; exit "${2:-1}"; }

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

packages_of() {  # packages_of SUITE: the Debian packages its root gets (they key its cache)
  if [ "$1" = forky ]; then echo "${PACKAGES[*]} ${FORKY_PACKAGES[*]}"; else echo "${PACKAGES[*]}"; fi
}

suite_of() {
  case "$1" in
    trixie|13|30.2) echo trixie ;;
    forky|testing|32.2) echo forky ;;
    *) return 1 ;;
  esac
}

# -- arguments -----------------------------------------------------------------------------------------------------

ARGS=("$@") BUILD_ONLY=0 REBUILD=0 SUITES=() PYTEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; PYTEST_ARGS=("$@"); break ;;
    --build-only) BUILD_ONLY=1 ;;
    --rebuild) REBUILD=1 ;;
    -h|--help) usage ;;
    -*) say "unknown option $1"; usage ;;
    *) suite="$(suite_of "$1")" || die "unknown root '$1': use trixie (OBS 30.2) or forky (OBS 32.2)" 2
       SUITES+=("$suite") ;;
  esac
  shift
done
[ ${#SUITES[@]} -gt 0 ] || usage
[ ${#PYTEST_ARGS[@]} -gt 0 ] || PYTEST_ARGS=("${DEFAULT_TESTS[@]}")

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "needs root for debootstrap, chroot and mount: run it as root"
  exec sudo --preserve-env bash "$0" "${ARGS[@]}"
fi
for tool in chroot mount umount flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

# The test data (models, clips) the suite reads: what tests/paths.py would pick on the host.
DATA="$(cd "$REPO/tests" && python3 -c 'import paths; print(paths.DATA)' 2>/dev/null)" || DATA=""
[ -n "$DATA" ] && [ -d "$DATA/models" ] || die "shared test data not found: set OBS_RVM_TEST_DATA to the shared folder"

# -- mounts: every mount this script makes is undone when it exits, whatever the reason ---------------------------

MOUNTED=()
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null ||
      say "warning: could not unmount ${MOUNTED[i]}"
  done
  MOUNTED=()
}
trap unmount_all EXIT
trap 'unmount_all; trap - INT; kill -INT $$' INT
trap 'unmount_all; exit 143' TERM HUP

bind() {  # bind SOURCE ROOT [ro]: SOURCE at the same path inside ROOT
  local src="$1" dest="$2$1"
  if [ -d "$src" ]; then mkdir -p "$dest"; else mkdir -p "$(dirname "$dest")"; [ -e "$dest" ] || : >"$dest"; fi
  mount --bind "$src" "$dest"
  MOUNTED+=("$dest")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$dest"; fi
}

mounts_under() { awk -v p="$1/" 'index($2 "/", p) == 1 { print $2 }' /proc/mounts; }

remove_root() {  # never follows a bind mount into the host
  [ -z "$(mounts_under "$1")" ] || die "$1 still has mounts ($(mounts_under "$1" | head -1)): not removing it"
  rm -rf --one-file-system "$1"
}

# -- building a root -----------------------------------------------------------------------------------------------

archive_reachable() {  # the suite's Release file can be fetched (python3 is there wherever the tests run)
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30).read(1)' \
    "$MIRROR/dists/$1/Release" 2>/dev/null
}

in_root() {  # in_root ROOT COMMAND...: a clean environment inside the root
  local root="$1"; shift
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

build_root() {  # build_root SUITE DIR
  local suite="$1" dir="$2" script="" packages
  read -ra packages <<<"$(packages_of "$suite")"
  [ -f "/usr/share/debootstrap/scripts/$suite" ] || script=/usr/share/debootstrap/scripts/sid  # forky on Debian 12
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          debootstrap >/dev/null; } || die "cannot install debootstrap"
  fi
  remove_root "$dir"
  say "building the $suite root in $dir (debootstrap, then ${packages[*]})"
  debootstrap --variant=minbase --include=ca-certificates "$suite" "$dir" "$MIRROR" $script >"$dir.log" 2>&1 ||
    { tail -5 "$dir.log" >&2; return 1; }
  # The testing suite's Release file can be past its Valid-Until date; apt would refuse it.
  echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99obs-rvm-no-valid-until"
  echo 'APT::Install-Recommends "false";' >"$dir/etc/apt/apt.conf.d/99obs-rvm-no-recommends"
  bind /proc "$dir"; bind /sys "$dir"; bind /dev "$dir"; bind /dev/pts "$dir"
  local ok=0
  { in_root "$dir" apt-get update -q && in_root "$dir" apt-get install -y -q "${packages[@]}" &&
      in_root "$dir" apt-get clean; } >>"$dir.log" 2>&1 || ok=1
  unmount_all
  [ $ok -eq 0 ] || { tail -5 "$dir.log" >&2; return 1; }
}

# Called with the root's lock held: the cached root for SUITE, built if missing. Exit 3: archive unreachable.
ensure_root() {
  local suite="$1" key dir packages
  read -ra packages <<<"$(packages_of "$suite")"
  key="$(printf '%s\n' "$suite" "$MIRROR" "${packages[@]}" | sha256sum | cut -c1-12)"
  dir="$CACHE/$suite-$key"
  if [ $REBUILD -eq 1 ] || [ ! -f "$dir/.obs-rvm-complete" ]; then
    archive_reachable "$suite" || return 3
    local t0=$SECONDS
    if ! build_root "$suite" "$dir.partial"; then
      archive_reachable "$suite" && die "building the $suite root failed: log in $dir.partial.log"
      return 3
    fi
    for old in "$CACHE/$suite"-*; do  # roots of an older package list
      [ -d "$old" ] && [ "$old" != "$dir.partial" ] && remove_root "$old"
    done
    touch "$dir.partial/.obs-rvm-complete"
    mv "$dir.partial" "$dir"
    mv "$dir.partial.log" "$dir.log"
    say "built the $suite root in $((SECONDS - t0)) s"
  fi
  ROOT="$dir"
}

# -- pip inside the root: the host's CA bundle, pip settings and the local folders they name -----------------------

PIP_FILES=(/etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" "$HOME/.pip" ${PIP_CONFIG_FILE:+"$PIP_CONFIG_FILE"})

pip_settings_in() {  # pip_settings_in ROOT
  local root="$1" bundle path
  for bundle in "${SSL_CERT_FILE:-}" "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$bundle" ] && [ -f "$bundle" ]; then
      mkdir -p "$root$(dirname "$bundle")"; cp -L "$bundle" "$root$bundle"
    fi
  done
  CA_BUNDLE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  for path in "${PIP_FILES[@]}"; do
    if [ -e "$path" ]; then
      rm -rf "${root:?}$path"; mkdir -p "$root$(dirname "$path")"; cp -rL "$path" "$root$path"
    fi
  done
  if [ ! -f "$root/etc/pip.conf" ] && [ -f "$CA_BUNDLE" ]; then
    printf '[global]\ncert = %s\n' "$CA_BUNDLE" >"$root/etc/pip.conf"
  fi
  # Local wheel folders and indexes (find-links = /opt/wheels, file:///...) the settings name: read-only, same path.
  local named
  named="$( { env | grep '^PIP_' | cut -d= -f2-; cat "${PIP_FILES[@]}" 2>/dev/null; find "${PIP_FILES[@]}" \
              -type f -exec cat {} + 2>/dev/null; } | grep -oE '(file://)?/[^ "'\'']+' | sed 's|^file://||' | sort -u)"
  while read -r path; do
    path="${path%/simple}"; path="${path%/}"
    case "$path" in ''|/|/etc*|/proc*|/sys*|/dev*|/usr*|/root*|/home*|"$HOME"*) continue ;; esac
    [ -d "$path" ] && ! mountpoint -q "$root$path" && bind "$path" "$root" ro
  done <<<"$named"
}

# -- one suite -----------------------------------------------------------------------------------------------------

run_suite() {  # run_suite SUITE: sets RESULT to the summary line
  local suite="$1" t0=$SECONDS rc=0
  ensure_root "$suite" || return $?
  local root="$ROOT" built=$((SECONDS - t0))
  [ $BUILD_ONLY -eq 0 ] || { RESULT="$suite: root ready in $root ($built s)"; return 0; }
  bind /proc "$root"; bind /sys "$root"; bind /dev "$root"; bind /dev/pts "$root"; bind /dev/shm "$root"
  bind "$REPO" "$root"; [[ "$DATA" == "$REPO"/* ]] || bind "$DATA" "$root" ro
  pip_settings_in "$root"
  local versions
  versions="$(in_root "$root" sh -c 'obs --version 2>/dev/null | sed -n "s/^OBS Studio - \([0-9.]*\).*/OBS \1/p";
                                    python3 -c "import platform; print(\"Python\", platform.python_version())"' |
              paste -sd, | sed 's/,/, /')"
  say "$suite ($versions): installing this checkout into $VENV"
  local pipenv=() var
  while IFS= read -r var; do pipenv+=("$var"); done < <(env | grep -E '^(PIP_|https?_proxy=|HTTPS?_PROXY=|no_proxy=)')
  local testenv=()  # the tests' own knobs (OBS_RVM_SOAK_MINUTES, ...) pass through
  while IFS= read -r var; do testenv+=("$var"); done < <(env | grep -E '^OBS_RVM_' | grep -vE '^OBS_RVM_(ROOTS|TEST_DATA|DEBIAN_MIRROR)=')
  local t1=$SECONDS
  { [ -x "$root$VENV/bin/python" ] || in_root "$root" python3 -m venv "$VENV"; } &&
    in_root "$root" "${pipenv[@]}" "$VENV/bin/python" -m pip install -q -e "$REPO[test,webgpu]" ||
    { unmount_all; die "installing the project into the $suite root failed"; }
  local installed=$((SECONDS - t1)) t2=$SECONDS log="$root/tmp/obs-matrix-pytest.log"
  say "$suite ($versions): pytest ${PYTEST_ARGS[*]}"
  in_root "$root" "${pipenv[@]}" "${testenv[@]}" OBS_RVM_TEST_DATA="$DATA" TMPDIR=/tmp SSL_CERT_FILE="$CA_BUNDLE" \
    sh -c 'cd "$1" && shift && exec "$@"' sh "$REPO" "$VENV/bin/python" -m pytest -p no:cacheprovider \
    "${PYTEST_ARGS[@]}" 2>&1 | tee "$log" || rc=$?
  unmount_all
  local summary
  summary="$(grep -E '^=+ .*(passed|failed|error|skipped|deselected|no tests ran).* in [0-9.]+s' "$log" | tail -1 |
             sed -E 's/^=+ //; s/ =+$//')"
  RESULT="$suite ($versions): ${summary:-no pytest summary}"
  RESULT+=" (root ready in ${built} s, install ${installed} s, tests $((SECONDS - t2)) s)"
  return $rc
}

mkdir -p "$CACHE"
status=0
for suite in "${SUITES[@]}"; do
  exec 9>"$CACHE/$suite.lock"
  flock 9
  rc=0
  RESULT=""
  run_suite "$suite" || rc=$?
  flock -u 9
  if [ $rc -eq 3 ]; then
    say "!!! SKIPPED $suite: Debian's archive ($MIRROR) cannot be reached, so its root could not be built !!!"
    [ $status -ne 0 ] || status=3
  else
    say "RESULT $RESULT"
    [ $rc -eq 0 ] || status=1
  fi
done
exit $status
