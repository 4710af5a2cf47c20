#!/usr/bin/env bash
# Sign, wrap in a .dmg and notarise LocalChat.app (called by packaging/build.py).
#   packaging/macos/sign.sh dist/LocalChat.app dist/LocalChat-<version>.dmg
#
# Signing needs a "Developer ID Application" certificate in the keychain:
#   MACOS_SIGN_IDENTITY="Developer ID Application: Name (TEAMID)"
# Notarising also needs an App Store Connect API key or an app password:
#   MACOS_NOTARY_PROFILE=<a profile stored with `xcrun notarytool store-credentials`>
# Without them the .app and .dmg are built unsigned (Gatekeeper then asks the
# user to open it with right-click > Open the first time).
set -euo pipefail
app="$1"
dmg="$2"
here="$(cd "$(dirname "$0")" && pwd)"

if [[ -n "${MACOS_SIGN_IDENTITY:-}" ]]; then
    # Hardened runtime (required for notarisation) with the entitlements
    # llama.cpp and Python need: JIT-less, but unsigned memory for ctypes.
    codesign --force --deep --timestamp --options runtime \
        --entitlements "$here/entitlements.plist" \
        --sign "$MACOS_SIGN_IDENTITY" "$app"
    codesign --verify --deep --strict --verbose=2 "$app"
else
    echo "note: MACOS_SIGN_IDENTITY is not set; LocalChat.app is not signed" >&2
fi

# A plain .dmg: the app and a link to /Applications to drag it onto.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname "LocalChat" -srcfolder "$stage" -ov -format UDZO "$dmg"

if [[ -n "${MACOS_SIGN_IDENTITY:-}" ]]; then
    codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$dmg"
    if [[ -n "${MACOS_NOTARY_PROFILE:-}" ]]; then
        xcrun notarytool submit "$dmg" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
        xcrun stapler staple "$dmg"
    else
        echo "note: MACOS_NOTARY_PROFILE is not set; the .dmg is signed, not notarised" >&2
    fi
fi
