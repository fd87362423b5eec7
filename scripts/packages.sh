# Sourced by scripts/demo and scripts/test: installs missing Debian packages as root, or says
# what to install otherwise.
#   need_packages <who> <package>...
need_packages() {
    local who=$1 missing=() package
    shift
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    if [[ $EUID -ne 0 ]]; then
        echo "$who needs ${missing[*]}: run 'sudo apt-get install ${missing[*]}', or run this as root" >&2
        exit 1
    fi
    apt-get update
    apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}"
}
