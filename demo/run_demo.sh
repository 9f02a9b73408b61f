#!/usr/bin/env bash
# InvarLock's offline demo: certify two edits of the committed demo model (demo/model) against it.
#   8-bit round-to-nearest  -> expected PASS (exit 0)
#   2-bit round-to-nearest  -> expected FAIL (exit 1)
# then `invarlock verify` confirms that each certificate is about demo/model and that subject.
# Usage: bash demo/run_demo.sh [OUT_DIR]   (default: demo-output). Needs invarlock-core and
# invarlock-hf installed in the active Python; no network.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${1:-demo-output}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
started=$(date +%s)

echo "== making the subjects from demo/model"
"$PYTHON" demo/make_subjects.py "$OUT"

declare -A verdicts
for subject in rtn8 rtn2; do
    echo
    echo "== invarlock certify --baseline demo/model --subject $OUT/$subject --out $OUT/certificate-$subject"
    set +e
    "$PYTHON" -m invarlock.cli certify --baseline demo/model --subject "$OUT/$subject" --out "$OUT/certificate-$subject"
    code=$?
    set -e
    case $code in
        0) verdicts[$subject]=PASS ;;
        1) verdicts[$subject]=FAIL ;;
        *) echo "demo: certify exited with $code (an error, not a verdict)" >&2; exit "$code" ;;
    esac
done

for subject in rtn8 rtn2; do
    echo
    echo "== invarlock verify $OUT/certificate-$subject --baseline demo/model --subject $OUT/$subject"
    "$PYTHON" -m invarlock.cli verify "$OUT/certificate-$subject" --baseline demo/model --subject "$OUT/$subject"
done

echo
echo "== demo summary ($(( $(date +%s) - started ))s)"
echo "  8-bit RTN: ${verdicts[rtn8]}  -> $OUT/certificate-rtn8/certificate.html"
echo "  2-bit RTN: ${verdicts[rtn2]}  -> $OUT/certificate-rtn2/certificate.html"
if [[ ${verdicts[rtn8]} == PASS && ${verdicts[rtn2]} == FAIL ]]; then
    echo "  as expected: the 8-bit edit keeps the model, the 2-bit edit breaks it."
else
    echo "  unexpected verdicts; see the certificates." >&2
    exit 1
fi
