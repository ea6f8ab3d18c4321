# Sourced by the scripts: `need_apt CMD PACKAGE...` installs Debian PACKAGEs when CMD is missing.
need_apt() {
  local cmd="$1"
  shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  echo "installing $* (missing: $cmd)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}
