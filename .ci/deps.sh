#!/bin/sh
# Install the Debian packages named as arguments that are missing.
# As root: apt-get installs them. Otherwise: print the command and fail.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages; run as root:" >&2
  echo "  apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# nginx (bench/echo.sh runs its own, on a port of its own): Debian's
# postinst starts the system nginx on port 80, and a failed start fails the
# install. Unless the host has a policy of its own, deny service starts
# for this install (exit 101 = "action forbidden", see invoke-rc.d(8)).
policy=/usr/sbin/policy-rc.d
case " $missing " in
  *" nginx-core "*|*" nginx "*)
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\n# temporary, from .ci/deps.sh: start no service\nexit 101\n' >"$policy" &&
        chmod 755 "$policy" && trap 'rm -f "$policy"' EXIT && trap 'exit 130' INT TERM
    fi ;;
esac
apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing
