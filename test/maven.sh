# test/maven.sh — sourced by test/kafka/kafka.sh and test/debezium/debezium.sh: jars from Maven Central.
# shellcheck shell=bash
#
# maven_classpath POM CP_FILE WHAT [JAR...] — resolve POM's dependencies into ~/.m2 (offline first: no
#   network once cached) and write their classpath to CP_FILE, unless CP_FILE is newer than POM and
#   complete (classpath_complete); on failure print Maven's last lines and return 1. WHAT names the
#   jars in the messages; the JARs (name fragments) must be on the classpath.
maven_classpath() {
    local pom="$1" cp="$2" what="$3" out; shift 3
    if [ -s "$cp" ] && [ "$cp" -nt "$pom" ] && classpath_complete "$cp" "$@"; then return 0; fi
    command -v mvn >/dev/null || { echo "mvn not found (apt-get install maven)" >&2; return 1; }
    echo "resolving $what from Maven Central into ~/.m2 ($pom)" >&2
    mkdir -p "$(dirname "$cp")"
    out="$(mktemp)"
    if ! mvn -B -q -o -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp.tmp" >"$out" 2>&1 \
        && ! mvn -B -q -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp.tmp" >"$out" 2>&1; then
        tail -n 40 "$out" >&2; rm -f "$out"
        echo "mvn dependency:build-classpath failed" >&2; return 1
    fi
    rm -f "$out"
    mv "$cp.tmp" "$cp"
    classpath_complete "$cp" "$@" || { echo "classpath $cp names missing jars" >&2; return 1; }
}

# classpath_complete CP_FILE [JAR...] — more than 10 jars, each of them exists, and each JAR fragment
# occurs in the classpath.
classpath_complete() {
    local j cp="$1"; shift
    IFS=: read -r -a jars <"$cp"
    [ ${#jars[@]} -gt 10 ] || return 1
    for j in "${jars[@]}"; do [ -f "$j" ] || return 1; done
    for j in "$@"; do grep -q -- "$j" "$cp" || return 1; done
}
