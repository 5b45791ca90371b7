#!/usr/bin/env bash
# Run the framework adapter tests (tests/integrations/) against the real ESPnet, SpeechBrain, PyTorch
# Lightning and torchjd, in .venv-integrations (built or refreshed first by scripts/setup-integrations.sh).
# Prints, as its last line, one verdict per framework:
#   integrations: espnet=pass speechbrain=pass lightning=pass torchjd=pass
# with `fail` or `skip(<reason>)` where that applies; exits non-zero if any framework failed (a skip is
# reported, not hidden: it means the framework could not be tested here).
set -uo pipefail
cd "$(dirname "$0")/.."

FRAMEWORKS=(espnet speechbrain lightning torchjd)
PY=.venv-integrations/bin/python
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT

if ! bash scripts/setup-integrations.sh; then
  line="integrations:"
  for fw in "${FRAMEWORKS[@]}"; do line+=" $fw=skip(setup-integrations.sh failed)"; done
  echo "$line"
  exit 1
fi

status=0
verdicts=()
for fw in "${FRAMEWORKS[@]}"; do
  echo "== integrations: $fw"
  "$PY" -m pytest -q -p no:cacheprovider -rs "tests/integrations/test_$fw.py" \
    --junitxml="$reports/$fw.xml" 2>&1 | tail -n 25
  code=${PIPESTATUS[0]}
  verdict=$("$PY" - "$reports/$fw.xml" "$code" <<'EOF'
import sys
import xml.etree.ElementTree as ET

path, code = sys.argv[1], int(sys.argv[2])
try:
    suite = ET.parse(path).getroot()
except (OSError, ET.ParseError):
    print("fail")
    sys.exit()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
tests, failures = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
skips = [c.find("skipped") for c in suite.iter("testcase") if c.find("skipped") is not None]
if code != 0 or failures:
    print("fail")
elif tests == 0 or len(skips) == tests:
    reason = (skips[0].get("message", "") if skips else "no tests collected").replace(" ", "_")
    print(f"skip({reason[:80]})")
else:
    print("pass")
EOF
)
  [ "$verdict" = "fail" ] && status=1
  verdicts+=("$fw=$verdict")
done

echo "integrations: ${verdicts[*]}"
exit $status
