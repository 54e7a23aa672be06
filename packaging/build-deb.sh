#!/usr/bin/env bash
# Builds dist/callrelay_<version>_<arch>.deb, the package installers put on gateways:
#   /usr/bin/callrelay                     release build, Swift runtime linked statically, stripped
#   /etc/callrelay/callrelay.toml          conffile: the commented sample (packaging/config, generated)
#   /lib/systemd/system/callrelay.service  hardened unit (packaging/systemd)
#   /usr/share/man/man1/callrelay.1.gz     from the commands' --help (swift-argument-parser)
#   /usr/share/doc/callrelay/              copyright, changelog, operations and configuration docs
# plus dist/callrelay_<version>_<arch>.debug (the debug symbols, for crash reports).
#
# Depends is computed by dpkg-shlibdeps from the binary's dynamic libraries; the script fails when
# anything of Swift or Foundation is linked dynamically.
#
# Usage: packaging/build-deb.sh            (from anywhere; needs swift, dpkg-dev, binutils)
# Environment: CALLRELAY_RELEASE_SCRATCH   scratch path of the release build (.build-release-static)
#              CALLRELAY_MANUAL_SCRATCH    scratch path for generating the man page (.build, where
#                                          `swift test` has already built the debug products)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
release_scratch=${CALLRELAY_RELEASE_SCRATCH:-.build-release-static}
manual_scratch=${CALLRELAY_MANUAL_SCRATCH:-.build}

for tool in swift dpkg-deb dpkg-shlibdeps objcopy strip gzip; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done

echo "==> building callrelay (release, --static-swift-stdlib, scratch $release_scratch)"
# -z now: full RELRO (lintian hardening-no-bindnow); a linker flag only, so it costs a relink.
swift build -c release --static-swift-stdlib -Xlinker -z -Xlinker now --product callrelay --scratch-path "$release_scratch" 2>&1 \
  | grep -vE "^\[[0-9]+/[0-9]+\]|warning: the use of .mktemp." || true
bin="$release_scratch/release/callrelay"
[ -x "$bin" ] || { echo "build-deb: the release build failed" >&2; exit 1; }

version=$("$bin" --version)
arch=$(dpkg --print-architecture)
changelog_version=$(sed -n '1s/^callrelay (\([^)]*\)).*/\1/p' packaging/debian/changelog)
if [ "$changelog_version" != "$version" ]; then
  echo "build-deb: callrelay --version says $version but packaging/debian/changelog starts with $changelog_version; add a changelog entry" >&2
  exit 1
fi

# Nothing of Swift may be linked dynamically: the gateway has no Swift runtime.
dynamic=$(ldd "$bin")
if grep -Eq 'libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime|not found' <<<"$dynamic"; then
  echo "build-deb: unexpected dynamic libraries:" >&2
  echo "$dynamic" >&2
  exit 1
fi

stage=$(mktemp -d /tmp/callrelay-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
mkdir -p dist "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/etc/callrelay" "$pkg/lib/systemd/system" \
  "$pkg/usr/share/man/man1" "$pkg/usr/share/doc/callrelay" "$pkg/usr/share/lintian/overrides"

echo "==> stripping (debug symbols kept in dist/)"
debug="dist/callrelay_${version}_${arch}.debug"
objcopy --only-keep-debug "$bin" "$debug"
strip --strip-all --remove-section=.comment -o "$pkg/usr/bin/callrelay" "$bin"
objcopy --add-gnu-debuglink="$debug" "$pkg/usr/bin/callrelay"
chmod 0755 "$pkg/usr/bin/callrelay"

install -m 0644 packaging/config/callrelay.toml "$pkg/etc/callrelay/callrelay.toml"
install -m 0644 packaging/systemd/callrelay.service "$pkg/lib/systemd/system/callrelay.service"
install -m 0644 packaging/debian/copyright "$pkg/usr/share/doc/callrelay/copyright"
gzip -9n -c packaging/debian/changelog >"$pkg/usr/share/doc/callrelay/changelog.gz"
for doc in operations configuration; do
  gzip -9n -c "docs/$doc.md" >"$pkg/usr/share/doc/callrelay/$doc.md.gz"
done
install -m 0644 packaging/lintian/callrelay "$pkg/usr/share/lintian/overrides/callrelay"

echo "==> man page (swift package plugin generate-manual, scratch $manual_scratch)"
swift package --scratch-path "$manual_scratch" plugin generate-manual --configuration debug 2>&1 | grep -E "error|Generated" || true
manual="$manual_scratch/plugins/GenerateManual/outputs/callrelay/callrelay.1"
[ -f "$manual" ] || { echo "build-deb: the man page was not generated ($manual)" >&2; exit 1; }
# mdoc wants .Pp between paragraphs; the generator writes empty lines (groff warns about each).
sed 's/^$/.Pp/' "$manual" | gzip -9n >"$pkg/usr/share/man/man1/callrelay.1.gz"

echo "==> Depends (dpkg-shlibdeps)"
mkdir -p "$stage/debian"
printf 'Source: callrelay\nMaintainer: callrelay developers <dev@callrelay.local>\n\nPackage: callrelay\nArchitecture: any\n' \
  >"$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O "pkg/usr/bin/callrelay" 2> >(grep -v "^$" >&2) | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$pkg/DEBIAN/"
install -m 0644 packaging/debian/conffiles "$pkg/DEBIAN/conffiles"
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$pkg/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@DEPENDS@/$depends/" \
  packaging/debian/control.in >"$pkg/DEBIAN/control"

# Reproducible: every file dated from the changelog entry, owned by root.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -d "$(sed -n 's/^ -- .*>  //p' packaging/debian/changelog | head -n 1)" +%s)}
find "$pkg" -type d -exec chmod 0755 {} +
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb="dist/callrelay_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null

size() { stat -c %s "$1" | awk '{ printf "%.1f MB (%d bytes)", $1 / 1048576, $1 }'; }
echo "==> $deb"
echo "    package:            $(size "$deb")"
echo "    binary, stripped:   $(size "$pkg/usr/bin/callrelay")   (unstripped $(size "$bin"))"
echo "    Depends:            $depends"
echo "    ldd /usr/bin/callrelay:"
ldd "$pkg/usr/bin/callrelay" | sed 's/^/      /'
