#!/usr/bin/env bash
# Builds the programs the stack pins in .env from their Go modules, so that tests can run the
# same versions of Prometheus (with promtool) and Jaeger as docker-compose.yml, vegeta as
# the load-tool peer of the traffic generator, and kustomize, which builds the Kubernetes
# manifests of deploy/kubernetes, on a machine without Docker.
#
#   scripts/backends.sh                build whatever is missing, then print versions and paths
#   scripts/backends.sh path NAME      print the path of one built program (prometheus,
#                                      promtool, jaeger, vegeta, kustomize); exit 1 if it is
#                                      not built
#   scripts/backends.sh versions       print the pinned versions as NAME=VALUE lines
#
# Versions come from .env; a variable set in the environment wins, as with docker compose.
# Each program is built once per version into
#   ${FAILURE_LAB_BACKENDS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/failure-lab/backends}/NAME-VERSION/
# outside the work tree: in a temporary folder first, renamed into place when complete, under
# a lock so that two runs at once do not build the same thing twice.
#
# Each module is copied out of the Go module cache and built with `go build`: `go install
# MODULE@VERSION` refuses Prometheus's and Jaeger's go.mod, which carry replace directives.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_FILE="$ROOT/.env"
BACKENDS_DIR=${FAILURE_LAB_BACKENDS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/failure-lab/backends}
GO_MINIMUM=1.25 # Prometheus 3.13's go.mod asks for go 1.25.0

die() {
	echo "backends: $*" >&2
	exit 1
}

# The value of NAME: the environment's if set there, else the last NAME=... line of .env
# (surrounding quotes and a trailing " # comment" removed).
setting() {
	local name=$1 line value
	if [[ -n ${!name+set} ]]; then
		printf '%s\n' "${!name}"
		return
	fi
	line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${name}=" "$ENV_FILE" | tail -n 1) ||
		die "$name is neither in the environment nor in $ENV_FILE"
	value=${line#*=}
	value=${value%%[[:space:]]#*}
	value=${value%"${value##*[![:space:]]}"}
	if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
		value=${BASH_REMATCH[1]}
	fi
	printf '%s\n' "$value"
}

image_tag() {
	local image=$1
	[[ $image =~ :([^:/@]+)$ ]] || die "no version tag in image $image"
	printf '%s\n' "${BASH_REMATCH[1]}"
}

# Versions, all derived from .env here and nowhere else.
#   Prometheus 3.M.P is the Go module github.com/prometheus/prometheus v0.(300+M).P.
#   Jaeger's v2 program cmd/jaeger is released from the same commit as the v1 tag named by
#   JAEGER_GO_MODULE; v1.N.x was released with v2.(N-63).x (v1.63.0 with v2.0.0, up to v1.76.0
#   with v2.13.0, the last v1). The v2 tags cannot be fetched as Go module versions.
load_versions() {
	local tag major minor patch
	tag=$(image_tag "$(setting PROMETHEUS_IMAGE)")
	[[ $tag =~ ^v?([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || die "PROMETHEUS_IMAGE tag $tag is not vX.Y.Z"
	major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]} patch=${BASH_REMATCH[3]}
	[[ $major == 3 ]] || die "PROMETHEUS_IMAGE: only Prometheus 3.x maps to a Go module version here"
	PROMETHEUS_VERSION=$major.$minor.$patch
	PROMETHEUS_MODULE_VERSION=v0.$((300 + 10#$minor)).$patch

	tag=$(image_tag "$(setting JAEGER_IMAGE)")
	[[ $tag =~ ^v?(2)\.([0-9]+)\.([0-9]+)$ ]] || die "JAEGER_IMAGE tag $tag is not 2.Y.Z"
	JAEGER_VERSION=2.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}
	JAEGER_MODULE_VERSION=$(setting JAEGER_GO_MODULE)
	[[ $JAEGER_MODULE_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] ||
		die "JAEGER_GO_MODULE $JAEGER_MODULE_VERSION is not v1.N.P"
	minor=${JAEGER_VERSION#2.}
	minor=${minor%%.*}
	((10#${BASH_REMATCH[1]} - 63 == 10#$minor)) ||
		die "JAEGER_GO_MODULE $JAEGER_MODULE_VERSION was not released with Jaeger $JAEGER_VERSION" \
			"(v1.N goes with v2.(N-63)); change both in $ENV_FILE"

	VEGETA_MODULE_VERSION=$(setting VEGETA_VERSION)
	[[ $VEGETA_MODULE_VERSION =~ ^v12\.[0-9]+\.[0-9]+$ ]] ||
		die "VEGETA_VERSION $VEGETA_MODULE_VERSION is not v12.Y.Z"
	VEGETA_VERSION=${VEGETA_MODULE_VERSION#v}

	KUSTOMIZE_MODULE_VERSION=$(setting KUSTOMIZE_VERSION)
	[[ $KUSTOMIZE_MODULE_VERSION =~ ^v5\.[0-9]+\.[0-9]+$ ]] ||
		die "KUSTOMIZE_VERSION $KUSTOMIZE_MODULE_VERSION is not v5.Y.Z"
	KUSTOMIZE_VERSION=${KUSTOMIZE_MODULE_VERSION#v}
}

# The folder a program is built into, and the version its --version output must state.
program_dir() {
	case $1 in
	prometheus | promtool) printf '%s\n' "$BACKENDS_DIR/prometheus-$PROMETHEUS_VERSION" ;;
	jaeger) printf '%s\n' "$BACKENDS_DIR/jaeger-$JAEGER_VERSION" ;;
	vegeta) printf '%s\n' "$BACKENDS_DIR/vegeta-$VEGETA_VERSION" ;;
	kustomize) printf '%s\n' "$BACKENDS_DIR/kustomize-$KUSTOMIZE_VERSION" ;;
	*) die "unknown program $1 (known: prometheus, promtool, jaeger, vegeta, kustomize)" ;;
	esac
}

program_version() {
	case $1 in
	prometheus | promtool) printf '%s\n' "$PROMETHEUS_VERSION" ;;
	jaeger) printf '%s\n' "$JAEGER_VERSION" ;;
	vegeta) printf '%s\n' "$VEGETA_VERSION" ;;
	kustomize) printf '%s\n' "$KUSTOMIZE_VERSION" ;;
	esac
}

# True when the program is there, runs, and says it is the pinned version.
runs() {
	local name=$1 binary output
	binary=$(program_dir "$name")/$name
	[[ -x $binary ]] || return 1
	if [[ $name == kustomize ]]; then
		output=$("$binary" version 2>&1) || return 1 # no --version flag
	else
		output=$("$binary" --version 2>&1) || return 1
	fi
	[[ $output == *"$(program_version "$name")"* ]]
}

find_go() {
	GO=$(command -v go || true)
	[[ -n $GO ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; } ||
		die "Go is not installed. Install Go $GO_MINIMUM or newer (https://go.dev/doc/install," \
			"into /usr/local/go or on PATH) and run again; Debian's golang package may be older."
	local version
	version=$("$GO" env GOVERSION) || die "$GO does not run"
	version=${version#go}
	if [[ $(printf '%s\n%s\n' "$GO_MINIMUM" "$version" | sort -V | head -n 1) != "$GO_MINIMUM" ]]; then
		die "$GO is Go $version; these builds need Go $GO_MINIMUM or newer (https://go.dev/doc/install)"
	fi
}

# Fetches MODULE@VERSION into the Go module cache and copies its source into the writable
# folder $2. Prints the commit time of that version (RFC 3339, UTC).
module_source() {
	local module=$1 dest=$2 dir
	"$GO" mod download "$module" >/dev/null
	dir=$("$GO" list -m -f '{{.Dir}}' "$module")
	[[ -d $dir ]] || die "go mod download $module left no source folder"
	cp -R "$dir/." "$dest"
	chmod -R u+w "$dest"
	"$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$module"
}

build_prometheus() {
	local out=$1 src=$2 time date flags
	time=$(module_source "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" "$src")
	date=${time%%T*}
	date=${date//-/}-${time#*T}
	date=${date%Z} # the commit time as promu writes a build date: 20060102-15:04:05
	# The -X flags and the tag netgo of Prometheus's .promu.yml. Its release builds also set
	# the tag builtinassets, which embeds the web UI that its Makefile first compiles with npm
	# and generates web/ui/embed.go for: the module has neither, and with that tag the build
	# fails (undefined: EmbedFS). Without it the UI pages answer 500 (no index.html); the API,
	# /metrics and /-/ready are unaffected.
	flags="-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
	flags+=" -X github.com/prometheus/common/version.Revision=$PROMETHEUS_MODULE_VERSION"
	flags+=" -X github.com/prometheus/common/version.Branch=go-module"
	flags+=" -X github.com/prometheus/common/version.BuildUser=failure-lab"
	flags+=" -X github.com/prometheus/common/version.BuildDate=$date"
	(cd "$src" && "$GO" build -trimpath -tags netgo -ldflags "$flags" -o "$out/" \
		./cmd/prometheus ./cmd/promtool)
}

build_jaeger() {
	local out=$1 src=$2 time flags
	time=$(module_source "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" "$src")
	# What Jaeger's Makefile (BuildInfo.mk, BUILD_INFO_V2) sets for cmd/jaeger: the v2 tag and
	# the commit date. Its release builds also embed the UI, compiled from the jaeger-ui
	# submodule with npm; without it the UI is a placeholder page and the API is unaffected.
	flags="-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$JAEGER_VERSION"
	flags+=" -X github.com/jaegertracing/jaeger/internal/version.commitSHA=$JAEGER_MODULE_VERSION"
	flags+=" -X github.com/jaegertracing/jaeger/internal/version.date=$time"
	(cd "$src" && "$GO" build -trimpath -ldflags "$flags" -o "$out/jaeger" ./cmd/jaeger)
}

build_vegeta() {
	local out=$1 src=$2 time flags
	time=$(module_source "github.com/tsenart/vegeta/v12@$VEGETA_MODULE_VERSION" "$src")
	# The -X flags and the tag of vegeta's Makefile.
	flags="-X main.Version=$VEGETA_MODULE_VERSION -X main.Commit=$VEGETA_MODULE_VERSION"
	flags+=" -X main.Date=$time"
	(cd "$src" && "$GO" build -trimpath -tags netgo -ldflags "$flags" -o "$out/vegeta" .)
}

build_kustomize() {
	local out=$1 src=$2 time flags
	time=$(module_source "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_MODULE_VERSION" "$src")
	# What kustomize's release builds set (api/provenance): the tag and the build date.
	flags="-X sigs.k8s.io/kustomize/api/provenance.version=$KUSTOMIZE_MODULE_VERSION"
	flags+=" -X sigs.k8s.io/kustomize/api/provenance.buildDate=$time"
	(cd "$src" && "$GO" build -trimpath -ldflags "$flags" -o "$out/kustomize" .)
}

# build NAME PROGRAM...: builds NAME's programs unless they all run already.
build() {
	local name=$1 program dir tmp start
	shift
	dir=$(program_dir "$1")
	local missing=0
	for program in "$@"; do
		runs "$program" || missing=1
	done
	if ((!missing)); then
		echo "backends: $name $(program_version "$1") already built in $dir"
		return
	fi
	[[ -n ${GO:-} ]] || find_go
	# Each build is of its module alone: Prometheus ships a go.work naming folders that its
	# module zip leaves out. No C compiler is needed, as in the projects' release builds.
	export GOWORK=off CGO_ENABLED=0
	start=$SECONDS
	echo "backends: building $name $(program_version "$1") from its Go module ($*)"
	tmp=$(mktemp -d "$BACKENDS_DIR/.build-$name.XXXXXX")
	TMP_DIRS+=("$tmp")
	mkdir "$tmp/out" "$tmp/src"
	"build_$name" "$tmp/out" "$tmp/src"
	for program in "$@"; do
		[[ -x $tmp/out/$program ]] || die "the build of $name made no $program"
	done
	rm -rf "$dir"
	mv -T "$tmp/out" "$dir"
	rm -rf "$tmp"
	for program in "$@"; do
		runs "$program" || die "$dir/$program does not run or state version $(program_version "$1")"
	done
	echo "backends: built $name $(program_version "$1") in $((SECONDS - start)) s"
}

cleanup() {
	local tmp
	for tmp in "${TMP_DIRS[@]}"; do
		if [[ -d $tmp ]]; then
			chmod -R u+w "$tmp" 2>/dev/null || true
			rm -rf "$tmp"
		fi
	done
	return 0
}

main() {
	load_versions
	case ${1:-} in
	path)
		[[ $# == 2 ]] || die "usage: $0 path NAME"
		local binary
		binary=$(program_dir "$2")/$2
		[[ -x $binary ]] || die "$2 $(program_version "$2") is not built ($binary is missing): run \`make backends\`"
		printf '%s\n' "$binary"
		return
		;;
	versions)
		printf 'prometheus=%s\nprometheus_module=%s\njaeger=%s\njaeger_module=%s\nvegeta=%s\n' \
			"$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE_VERSION" "$JAEGER_VERSION" \
			"$JAEGER_MODULE_VERSION" "$VEGETA_VERSION"
		printf 'kustomize=%s\n' "$KUSTOMIZE_VERSION"
		return
		;;
	"") ;;
	*) die "usage: $0 [path NAME | versions]" ;;
	esac

	mkdir -p "$BACKENDS_DIR"
	exec 9>"$BACKENDS_DIR/.lock"
	if ! flock -n 9; then
		echo "backends: another run is building in $BACKENDS_DIR; waiting for it"
		flock 9
	fi
	# Folders of a build that was killed; none is in use while this run holds the lock.
	TMP_DIRS=("$BACKENDS_DIR"/.build-*)
	cleanup
	TMP_DIRS=()
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	local start=$SECONDS program
	build prometheus prometheus promtool
	build jaeger jaeger
	build vegeta vegeta
	build kustomize kustomize
	echo "backends: ready in $((SECONDS - start)) s"
	for program in prometheus promtool jaeger vegeta kustomize; do
		printf '  %-10s %-8s %s\n' "$program" "$(program_version "$program")" \
			"$(program_dir "$program")/$program"
	done
}

main "$@"
