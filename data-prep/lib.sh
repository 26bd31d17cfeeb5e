# Shared by the prepare-*.sh scripts (sourced, not run). The caller sets NAME first.
#
# Conventions:
# - every step writes into $WORK_DIR and records a marker in $WORK_DIR/.done/ when it
#   finishes; a rerun skips a step whose marker matches the chain of parameters of it and
#   all steps before it, so changing e.g. BPE_MERGES redoes BPE and everything after it;
# - the finished dataset is staged in $DEST.partial (no prep.json until the final checks
#   pass) and renamed to $DEST in one step: a directory named $DEST is always complete.

PREP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PREP_DIR/.." && pwd)"
export PREP_LOG_PREFIX="[prepare-$NAME]"
# The interpreter: $PYTHON, else the project's virtualenv (`make install` makes it; no need to
# activate it, as for the row scripts), else python from PATH.
if [[ -n ${PYTHON:-} ]]; then
    PY=$PYTHON
elif [[ -x $REPO_ROOT/.venv/bin/python ]]; then
    PY=$REPO_ROOT/.venv/bin/python
else
    PY="$(command -v python || command -v python3 || echo python)"
fi
# The helpers (data-prep/pn_dataprep) of this checkout and the pn_common they write through
# (the repository root), installed or not.
export PYTHONPATH="$PREP_DIR:$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 1)}"
CHECK_SIZES="${CHECK_SIZES:-1}"
# subword-nmt's learn_bpe shows a tqdm bar; outside a terminal, one line every 10 s is enough.
export TQDM_MININTERVAL="${TQDM_MININTERVAL:-10}"
KEEP_WORK="${KEEP_WORK:-0}"

log() { printf '%s %s\n' "$PREP_LOG_PREFIX" "$*" >&2; }
die() { printf '%s error: %s\n' "$PREP_LOG_PREFIX" "$*" >&2; exit 1; }
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

# The python helpers (python -m pn_dataprep COMMAND ...).
dp() { "$PY" -m pn_dataprep "$@"; }

check_tools() {
    command -v "$PY" >/dev/null 2>&1 \
        || die "no '$PY' on PATH: run 'make install' (the scripts find its .venv by themselves) or set PYTHON=/path/to/python"
    "$PY" -c 'import sacremoses, subword_nmt, regex' 2>/dev/null \
        || die "'$PY' cannot import sacremoses/subword_nmt: run 'make install' (or pip install sacremoses subword-nmt)"
    # fairseq-preprocess from PATH, else the one installed next to $PY (the project's .venv or
    # PYTHON=/path/to/venv/bin/python, not activated).
    PREPROCESS="$(command -v fairseq-preprocess || true)"
    local beside
    beside="$(dirname "$(command -v "$PY")")/fairseq-preprocess"
    [[ -z $PREPROCESS && -x $beside ]] && PREPROCESS="$beside"
    [[ -n $PREPROCESS ]] \
        || die "fairseq-preprocess is not on PATH: run 'make install' (or put fairseq's bin directory on PATH)"
    [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS=$WORKERS is not a positive integer"
    [[ ${BPE_MERGES:-1} =~ ^[1-9][0-9]*$ ]] || die "BPE_MERGES=$BPE_MERGES is not a positive integer"
}

# default_work_dir DEFAULT_DEST: work/<name> for the default DEST, else work/<name>-<DEST's
# basename>-<checksum of DEST's path>, so that preparations into different DESTs never share
# intermediate files.
default_work_dir() {
    if [[ $DEST == "$1" ]]; then
        printf '%s\n' "$REPO_ROOT/work/$NAME"
    else
        printf '%s\n' "$REPO_ROOT/work/$NAME-$(basename "$DEST")-$(printf '%s' "$DEST" | cksum | cut -d ' ' -f 1)"
    fi
}

# take_lock FILE: hold an exclusive lock on FILE (created, and removed at exit) until this
# script exits, or die naming the run that holds it. Without flock(1) (macOS) runs are not
# serialized.
LOCK_FILES=()
release_locks() {
    local f
    for f in ${LOCK_FILES[@]+"${LOCK_FILES[@]}"}; do rm -f "$f"; done
}
take_lock() {
    local file=$1 fd holder
    command -v flock >/dev/null 2>&1 || return 0
    mkdir -p "$(dirname "$file")"
    while :; do
        exec {fd}>>"$file"
        if ! flock -n "$fd"; then
            holder="$(cat "$file" 2>/dev/null || true)"
            die "another preparation is using ${2:-$file} (${holder:-its lock holder is starting}; lock $file): wait for it to finish, or give this run another DEST= (and WORK_DIR=)"
        fi
        # The previous holder removes the file on exit: make sure we locked the file that is
        # at that path now, not one that was just unlinked.
        [[ /proc/$$/fd/$fd -ef $file || ! -e /proc/$$/fd/$fd && -e $file ]] && break
        exec {fd}>&-
    done
    printf 'pid %s on %s, started %s, DEST=%s\n' "$$" "$(hostname 2>/dev/null || echo localhost)" \
        "$(date '+%Y-%m-%d %H:%M:%S')" "$DEST" >"$file"
    LOCK_FILES+=("$file")
    trap release_locks EXIT
}

# setup_dirs DEFAULT_DEST_NAME: resolves DEST, WORK_DIR, RAW_DIR; exits 0 if DEST is finished.
# Locks DEST and WORK_DIR against a concurrent run (take_lock).
setup_dirs() {
    local default_dest="$REPO_ROOT/data-bin/$1"
    DEST="$(abspath "${DEST:-$default_dest}")"
    DEST="${DEST%/}"
    WORK_DIR="$(abspath "${WORK_DIR:-$(default_work_dir "$default_dest")}")"
    WORK_DIR="${WORK_DIR%/}"
    PARTIAL="$DEST.partial"
    if [[ -f $DEST/prep.json ]]; then
        log "already prepared: $DEST/prep.json exists (delete $DEST to prepare it again)"
        exit 0
    fi
    take_lock "$DEST.lock" "DEST=$DEST"
    take_lock "$WORK_DIR.lock" "WORK_DIR=$WORK_DIR"
    if [[ -f $DEST/prep.json ]]; then  # a run that held the lock finished in between
        log "already prepared: $DEST/prep.json exists (delete $DEST to prepare it again)"
        exit 0
    fi
    if [[ -e $DEST ]]; then
        rmdir "$DEST" 2>/dev/null \
            || die "$DEST exists but has no prep.json, so it was not made by this script: move it away or choose another DEST="
    fi
    if [[ -n ${RAW_DIR:-} ]]; then
        [[ -d $RAW_DIR ]] || die "RAW_DIR=$RAW_DIR is not a directory"
        RAW_DIR="$(cd "$RAW_DIR" && pwd)"
    fi
    check_tools
    mkdir -p "$WORK_DIR/tmp" "$WORK_DIR/text"
    log "output $DEST, work directory $WORK_DIR, $WORKERS worker(s)"
}

STEP_CHAIN=""
# step NAME PARAMS COMMAND...: run COMMAND unless this step already finished with the same
# parameters (and the same parameters for every step before it: the marker holds them all).
step() {
    local name=$1 params=$2
    shift 2
    STEP_CHAIN="$STEP_CHAIN$name: $params"$'\n'
    local marker="$WORK_DIR/.done/$name"
    if [[ -f $marker && "$(cat "$marker")"$'\n' == "$STEP_CHAIN" ]]; then
        log "skip $name: already done"
        return 0
    fi
    rm -f "$marker"
    log "step $name ..."
    local start=$SECONDS
    "$@"
    mkdir -p "$WORK_DIR/.done"
    printf '%s' "$STEP_CHAIN" >"$marker.tmp"
    mv "$marker.tmp" "$marker"
    log "step $name done ($((SECONDS - start)) s)"
}

# fetch_step PARAMS COMMAND...: like step, but always runs (finding the raw files again is cheap,
# and a deleted or replaced download must be noticed).
fetch_step() {
    STEP_CHAIN="${STEP_CHAIN}fetch: $1"$'\n'
    shift
    "$@"
}

# raw_path FILE: where the raw FILE is (RAW_DIR or the download directory).
raw_path() {
    if [[ -n ${RAW_DIR:-} ]]; then printf '%s\n' "$RAW_DIR/$1"; else printf '%s\n' "$WORK_DIR/orig/$1"; fi
}

# fetch FILE URL: make FILE available, from RAW_DIR or by downloading URL (or $MIRROR/FILE).
fetch() {
    local file=$1 url=$2
    if [[ -n ${RAW_DIR:-} ]]; then
        [[ -f $RAW_DIR/$file ]] \
            || die "RAW_DIR=$RAW_DIR has no $file; put the file the recipe downloads from $url there, or unset RAW_DIR to download it"
        return 0
    fi
    [[ -n ${MIRROR:-} ]] && url="${MIRROR%/}/$file"
    local out="$WORK_DIR/orig/$file"
    if [[ -f $out ]]; then
        log "have $file"
        return 0
    fi
    dp fetch "$url" "$out" \
        || die "could not download $url; on an offline machine download it elsewhere, put it in a directory and rerun with RAW_DIR=<that directory>"
}

# damaged_raw FILE URL: stop for a raw FILE that could not be read (the helper said why, above);
# a downloaded one is deleted, so that a rerun fetches it again.
damaged_raw() {
    if [[ -n ${RAW_DIR:-} ]]; then
        die "RAW_DIR=$RAW_DIR has a damaged $1: replace it with the file from $2"
    fi
    rm -f "$WORK_DIR/orig/$1"
    die "the downloaded $1 is damaged; it was deleted, rerun to download it again"
}

# extract ARCHIVE MEMBER...: unpack the members of a .tgz into $WORK_DIR/orig/extracted.
extract() {
    local archive=$1
    shift
    local into="$WORK_DIR/orig/extracted" errors="$WORK_DIR/tmp/tar.err"
    mkdir -p "$into"
    log "extracting $# file(s) from $(basename "$archive")"
    if ! tar -xzf "$archive" -C "$into" "$@" 2>"$errors"; then
        cat "$errors" >&2
        local missing
        missing="$(sed -n 's/^tar: \(.*\): Not found in archive$/\1/p' "$errors" | tr '\n' ' ')"
        [[ -n $missing ]] && die "$archive has no ${missing% } (is it the archive the recipe downloads?)"
        if [[ -n ${RAW_DIR:-} ]]; then
            die "could not unpack $archive (truncated or corrupted copy?): replace it with a complete one, or unset RAW_DIR to download it"
        fi
        die "could not unpack $archive (truncated or corrupted download?): delete it and rerun to download it again"
    fi
}

# binarize SRC TGT: fairseq-preprocess --joined-dictionary on $TEXT/{train,valid,test}.bpe.*
binarize() {
    local src=$1 tgt=$2 out="$WORK_DIR/bin"
    rm -rf "$out.tmp"
    "$PREPROCESS" --source-lang "$src" --target-lang "$tgt" \
        --trainpref "$TEXT/train.bpe" --validpref "$TEXT/valid.bpe" --testpref "$TEXT/test.bpe" \
        --destdir "$out.tmp" --joined-dictionary --workers "$WORKERS" \
        || die "fairseq-preprocess failed (its messages are above); rerun to retry from this step"
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

# binarize_lm SUFFIX [MIN_COUNT]: fairseq-preprocess --only-source on $TEXT/{train,valid,test}SUFFIX,
# as fairseq's language-model recipes: no language in the names (dict.txt, train.bin, ...), which
# is what the language_modeling task reads. The dictionary holds the training words seen at least
# MIN_COUNT (default 1: every) times; the others become <unk> (--thresholdsrc).
binarize_lm() {
    local suffix=$1 min_count=${2:-1} out="$WORK_DIR/bin"
    rm -rf "$out.tmp"
    "$PREPROCESS" --only-source --thresholdsrc "$min_count" \
        --trainpref "$TEXT/train$suffix" --validpref "$TEXT/valid$suffix" --testpref "$TEXT/test$suffix" \
        --destdir "$out.tmp" --workers "$WORKERS" \
        || die "fairseq-preprocess failed (its messages are above); rerun to retry from this step"
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

# learn_bpe SRC TGT: joint BPE on the training text (src file first, as the recipes);
# apply_bpe LANG...: to every split.
learn_bpe() {
    dp learn-bpe --merges "$BPE_MERGES" --workers "$WORKERS" --out "$TEXT/code" \
        "$TEXT/train.tok.$1" "$TEXT/train.tok.$2"
}
apply_bpe() {
    local split lang
    for split in train valid test; do
        for lang in "$@"; do
            dp apply-bpe --codes "$TEXT/code" --workers "$WORKERS" "$TEXT/$split.tok.$lang" "$TEXT/$split.bpe.$lang"
        done
    done
}

# publish DATASET SRC TGT EXPECT [finalize options...]: stage, check, write prep.json, rename.
publish() {
    local dataset=$1 src=$2 tgt=$3 expect=$4
    shift 4
    publish_with finalize --dataset "$dataset" --src "$src" --tgt "$tgt" --expect "$expect" \
        --param "bpe_merges=$BPE_MERGES" "$@"
}

# publish_lm DATASET SUFFIX MIN_COUNT EXPECT [finalize-lm options...]: the same for a --only-source
# (language-modeling) dataset, binarize_lm SUFFIX MIN_COUNT's.
publish_lm() {
    local dataset=$1 suffix=$2 min_count=$3 expect=$4
    shift 4
    publish_with finalize-lm --dataset "$dataset" --text-suffix "$suffix" --min-count "$min_count" \
        --expect "$expect" "$@"
}

# publish_with FINALIZE_COMMAND [its options...]: stage $WORK_DIR/bin and $TEXT in $PARTIAL, run
# `pn_dataprep FINALIZE_COMMAND --dir $PARTIAL ...` (the checks, then prep.json), rename to $DEST.
publish_with() {
    local command=$1
    shift
    rm -rf "$PARTIAL"
    mkdir -p "$PARTIAL/text"
    local f
    # Hard links where possible: WMT's text is gigabytes, WikiText-103's half a gigabyte.
    for f in "$WORK_DIR/bin/"*; do cp -l "$f" "$PARTIAL/" 2>/dev/null || cp "$f" "$PARTIAL/"; done
    for f in "$TEXT/"*; do cp -l "$f" "$PARTIAL/text/" 2>/dev/null || cp "$f" "$PARTIAL/text/"; done
    local check=()
    [[ $CHECK_SIZES == 0 ]] && check=(--no-size-check)
    if ! dp "$command" --dir "$PARTIAL" ${check[@]+"${check[@]}"} "$@"; then
        rm -rf "$PARTIAL"
        die "final checks failed (see above); nothing was written to $DEST"
    fi
    mkdir -p "$(dirname "$DEST")"
    mv "$PARTIAL" "$DEST"
    if [[ $KEEP_WORK == 0 ]]; then
        # Downloads stay (a rerun after deleting DEST need not fetch them again).
        rm -rf "${WORK_DIR:?}/tmp" "${WORK_DIR:?}/text" "${WORK_DIR:?}/bin" "${WORK_DIR:?}/.done" "${WORK_DIR:?}/orig/extracted"
        rmdir "$WORK_DIR/orig" "$WORK_DIR" 2>/dev/null || true
    fi
    log "done: $DEST (prep.json lists the split sizes and tool versions)"
}

# Multi30k task 1 (prepare-multi30k.sh, and its English side for prepare-multi30k-lm.sh): the
# raw .gz files of github.com/multi30k/dataset, SHA-256 checked, tokenized and lowercased alike.
MULTI30K_URL="https://github.com/multi30k/dataset/raw/master/data/task1/raw"
# Raw split name -> fairseq split name.
declare -A MULTI30K_SPLIT_OF=([train]=train [val]=valid [test_2016_flickr]=test)

# multi30k_raw_files LANG...: the raw file names of those languages, one a line.
multi30k_raw_files() {
    local raw lang
    for raw in train val test_2016_flickr; do
        for lang in "$@"; do printf '%s\n' "$raw.$lang.gz"; done
    done
}

# multi30k_fetch_and_verify LANG...: the raw files of those languages from RAW_DIR or downloaded,
# checked against checksums/multi30k.sha256 (a bad download is deleted).
multi30k_fetch_and_verify() {
    local files f dir
    mapfile -t files < <(multi30k_raw_files "$@")
    for f in "${files[@]}"; do fetch "$f" "$MULTI30K_URL/$f"; done
    dir="$(dirname "$(raw_path "${files[0]}")")"
    if ! dp verify --sums "$PREP_DIR/checksums/multi30k.sha256" --dir "$dir" "${files[@]}"; then
        if [[ -n ${RAW_DIR:-} ]]; then
            die "the Multi30k raw files in RAW_DIR=$RAW_DIR do not match data-prep/checksums/multi30k.sha256"
        fi
        for f in "${files[@]}"; do rm -f "$WORK_DIR/orig/$f"; done
        die "the downloaded Multi30k files do not match data-prep/checksums/multi30k.sha256; they were deleted, rerun to download them again"
    fi
}

# multi30k_tokenize LANG...: every split, Moses-tokenized (escaping on, no -a) and lowercased, to
# $TEXT/{train,valid,test}.tok.LANG.
multi30k_tokenize() {
    local raw lang
    for raw in "${!MULTI30K_SPLIT_OF[@]}"; do
        for lang in "$@"; do
            dp tokenize --lang "$lang" --lowercase --workers "$WORKERS" \
                --out "$TEXT/${MULTI30K_SPLIT_OF[$raw]}.tok.$lang" "$(raw_path "$raw.$lang.gz")"
        done
    done
}
