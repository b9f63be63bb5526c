#!/bin/bash
# Build the Debian packages libp11smime0, libp11smime-dev, p11smime and p11smime-gateway from
# the committed tree (git archive of HEAD, so no build/ directory or stray file gets in), then
# run lintian on them. Tests are off by default (DEB_BUILD_OPTIONS=nocheck: ci/test.sh runs the
# suites, tests/package/installed.sh tests the installed packages); set DEB_BUILD_OPTIONS
# yourself to run the unit suites during the build.
# usage: ci/package.sh [OUTDIR]     (default: dist/ in the top directory)
# Environment: P11S_PACKAGE_JOBS (default 2), P11S_PACKAGE_TREE=worktree to package the working
# tree with its uncommitted changes instead of HEAD.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
jobs=${P11S_PACKAGE_JOBS:-2}
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck parallel=$jobs}
case " $DEB_BUILD_OPTIONS " in
*" parallel="*) ;;
*) DEB_BUILD_OPTIONS="$DEB_BUILD_OPTIONS parallel=$jobs" ;;
esac
profiles=
case " $DEB_BUILD_OPTIONS " in
*" nocheck "*) profiles=-Pnocheck ;;
esac

# The package version is the project version: refuse to build a mismatch.
cmake_version=$(sed -n 's/^project(p11smime VERSION \([0-9.]*\).*/\1/p' "$top/CMakeLists.txt")
deb_version=$(cd "$top" && dpkg-parsechangelog -S Version)
if [ "${deb_version%%-*}" != "$cmake_version" ]; then
	echo "ci/package.sh: debian/changelog says $deb_version, CMakeLists.txt $cmake_version" >&2
	exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/p11smime-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/p11smime-$cmake_version
mkdir "$src"
if [ "${P11S_PACKAGE_TREE:-}" = worktree ]; then
	# Tracked and untracked-but-not-ignored files of the working tree, as they are now.
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
		tar --null -T - -cf -) | tar -xf - -C "$src"
else
	(cd "$top" && git archive --format=tar HEAD) | tar -xf - -C "$src"
fi

echo "=== ci/package.sh: dpkg-buildpackage in $src (DEB_BUILD_OPTIONS='$DEB_BUILD_OPTIONS')"
# shellcheck disable=SC2086 # $profiles is empty or one option
(cd "$src" && nice -n 10 dpkg-buildpackage -us -uc -b $profiles) >"$work/build.log" 2>&1 || {
	tail -n 60 "$work/build.log" >&2
	echo "ci/package.sh: dpkg-buildpackage failed" >&2
	exit 1
}
changes=$(ls "$work"/p11smime_*.changes)
# The files the .changes lists (the .debs, .buildinfo) and the .changes itself.
for f in $(awk '/^Files:/ { f = 1; next } /^[^ ]/ { f = 0 } f { print $5 }' "$changes"); do
	cp "$work/$f" "$out/"
done
cp "$changes" "$out/"
cp "$work/build.log" "$out/p11smime_${deb_version}_build.log"

echo "=== ci/package.sh: lintian"
# Errors fail; warnings and info are printed for the record.
lintian_status=0
lintian --fail-on error --info "$out/$(basename "$changes")" || lintian_status=$?
ls -l "$out"/*.deb
if [ "$lintian_status" -ne 0 ]; then
	echo "ci/package.sh: lintian reported errors" >&2
	exit 1
fi
