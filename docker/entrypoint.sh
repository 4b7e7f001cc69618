#!/bin/sh
# The container's entrypoint: `docker run IMAGE [COMMAND...]` runs `protest-bot COMMAND...`
# (`telegram` by default), after
#   1. seeding the corpus folder with the image's articles when it is empty (a new volume or an
#      empty folder mounted over it), and the index folder with the image's index when it has none;
#   2. updating the index when the articles changed since it was built (only new or changed
#      articles are embedded). `index ...` and `add` skip this step: they are the user's own index
#      work (and `add` updates the index itself); --help skips both steps.
# What this script says goes to stderr, so that `ask --json` keeps a clean stdout.
set -eu

seed=${PROTEST_BOT_SEED:-/opt/protest-bot/seed}
corpus=${PROTEST_BOT_CORPUS:-corpus}
index=${PROTEST_BOT_INDEX:-index}

say() {
    echo "protest-bot: $*" >&2
}

is_empty() {
    [ -z "$(ls -A "$1" 2>/dev/null)" ]
}

seed_folder() { # seed_folder FROM TO WHAT
    if ! mkdir -p "$2" 2>/dev/null || ! cp -R "$1/." "$2/" 2>/dev/null; then
        say "error: $2/ is empty and not writable by user $(id -u), so the image's $3 cannot be put in it:" \
            "mount a folder that user $(id -u) can write (chown it, or run with --user)"
        exit 1
    fi
    say "$2/ was empty: copied in the image's $3"
}

wants_help=false
for arg in "$@"; do
    case "$arg" in
        --help | -h) wants_help=true ;;
    esac
done

if [ "$wants_help" = false ]; then
    if is_empty "$corpus"; then
        seed_folder "$seed/corpus" "$corpus" "articles"
    fi
    if [ ! -e "$index/CURRENT" ] && [ -e "$seed/index/CURRENT" ]; then
        # The vectors of every unchanged article are reused by the update below.
        seed_folder "$seed/index" "$index" "index"
    fi
    case "${1:-}" in
        index | add) ;; # the user's own index work; `add` updates the index itself
        *)
            if ! protest-bot index status >/dev/null 2>&1; then
                say "the index is not up to date with the articles: updating it"
                protest-bot index update >&2
            fi
            ;;
    esac
fi

exec protest-bot "$@"
