#!/usr/bin/env bash
# Known-advisory checks for the dependencies, where their databases can be reached from here.
#
#   .ci/advisories.sh            # checks what it can; fails only on a check that ran and found
#                                # something (or broke), never on a database it cannot reach
#   .ci/advisories.sh --strict   # a check that could not run fails too (for a machine that is
#                                # expected to reach the registry's audit service and GitHub)
#
# What it runs:
#   npm:  `npm audit --package-lock-only` on each lock file of websdk/page (npm's `latest` and each
#         pinned older SDK) and of cli/tests/ms-identity (Microsoft's identity client, which a
#         test runs), dev dependencies (esbuild) included; fails on an advisory of severity moderate
#         or above that is not allowed below. Then `npm audit signatures` (the registry's
#         signatures and provenance attestations of the installed packages), if the registry serves
#         its signing keys.
#   Rust: `cargo deny check advisories` (deny.toml's [advisories], its ignore list included)
#         against the RustSec database: fetched from GitHub when that answers, or a local git
#         checkout of it given as RUSTSEC_DB=/path/to/advisory-db (its age is printed).
# It ends with a summary saying, for each, CHECKED (and the result) or NOT CHECKED (and why).
set -uo pipefail
cd "$(dirname "$0")/.."

strict=0
[ "${1:-}" = "--strict" ] && strict=1

# npm advisories that are allowed, one per line: the GHSA id, then why. Keep each reason specific.
NPM_ALLOW=(
  # "GHSA-xxxx-xxxx-xxxx  reason"
)
NPM_FAIL_AT=moderate # fail on moderate, high and critical; low and info are listed, not failed

RUSTSEC_URL=https://github.com/rustsec/advisory-db

summary=()
failed=0
unchecked=0
fail() { summary+=("FAILED       $1"); failed=1; }
skip() { summary+=("NOT CHECKED  $1"); unchecked=1; }
ok() { summary+=("CHECKED      $1"); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- npm ---------------------------------------------------------------------------------------
npm_dirs=(websdk/page)
for d in websdk/page/sdk-*/; do [ -f "$d/package-lock.json" ] && npm_dirs+=("${d%/}"); done
# Microsoft's identity client, which the cli's cross-check test runs (npm ci in CI's cli step).
npm_dirs+=(cli/tests/ms-identity)

if ! command -v npm >/dev/null; then
  skip "npm advisories: npm is not installed"
else
  registry=$(cd websdk/page && npm config get registry)
  for d in "${npm_dirs[@]}"; do
    printf '\n-- npm audit: %s/package-lock.json\n' "$d"
    t0=$SECONDS
    (cd "$d" && timeout 120 npm audit --package-lock-only --json --audit-level=none) \
      >"$tmp/audit.json" 2>"$tmp/audit.err"
    # Reads npm's JSON report (or its error object) and prints one line: "ok …", "found …" or
    # "error …", after listing each advisory.
    verdict=$(NPM_ALLOW="$(printf '%s\n' "${NPM_ALLOW[@]}")" FAIL_AT=$NPM_FAIL_AT \
      node - "$tmp/audit.json" <<'EOF'
const fs = require("fs");
const rank = { info: 0, low: 1, moderate: 2, high: 3, critical: 4 };
let r;
try { r = JSON.parse(fs.readFileSync(process.argv[2], "utf8")); }
catch (e) { console.log("error: npm audit printed no report"); process.exit(0); }
if (!r.vulnerabilities) {
  const why = r.message || (r.error && (r.error.summary || r.error.code)) || "no report";
  console.log("error: " + String(why).split("\n")[0]);
  process.exit(0);
}
const allow = new Map(process.env.NPM_ALLOW.split("\n").filter(Boolean)
  .map(l => { const [id, ...why] = l.trim().split(/\s+/); return [id, why.join(" ")]; }));
const failAt = rank[process.env.FAIL_AT];
const seen = new Map(); // each advisory once, with the packages it affects
for (const v of Object.values(r.vulnerabilities))
  for (const via of v.via)
    if (typeof via === "object") {
      const id = (String(via.url || "").match(/GHSA-[\w-]+/) || [String(via.source)])[0];
      const a = seen.get(id) || { ...via, id, pkgs: new Set() };
      a.pkgs.add(`${via.name}@${via.range}`);
      seen.set(id, a);
    }
let bad = 0;
for (const a of seen.values()) {
  const allowed = allow.has(a.id);
  const counts = rank[a.severity] >= failAt && !allowed;
  if (counts) bad++;
  console.error(`  ${counts ? "FAIL" : allowed ? "allowed" : "below threshold"}: ${a.severity} ` +
    `${a.id} ${[...a.pkgs].join(", ")}: ${a.title} (${a.url})` +
    (allowed ? ` -- ${allow.get(a.id)}` : ""));
}
const m = r.metadata.vulnerabilities;
const counts = `${seen.size} advisories (critical ${m.critical}, high ${m.high}, moderate ` +
  `${m.moderate}, low ${m.low}) in ${r.metadata.dependencies.total} packages`;
console.log(bad ? `found ${bad} at ${process.env.FAIL_AT} or above: ${counts}` : `ok ${counts}`);
EOF
    )
    echo "   $verdict ($((SECONDS - t0)) s)"
    case "$verdict" in
      ok*) ok "npm advisories, $d: none at $NPM_FAIL_AT or above that is not allowed (${verdict#ok })" ;;
      found*) fail "npm advisories, $d: ${verdict#found }" ;;
      *) skip "npm advisories, $d: the registry refused or did not answer the audit request (${verdict#error: })"
        sed 's/^/   /' "$tmp/audit.err" | head -n 5 ;;
    esac
  done

  # Signatures: npm fetches the registry's keys from /-/npm/v1/keys, then checks each installed
  # package's registry signature and, where it has one, its provenance attestation (Sigstore).
  printf '\n-- npm audit signatures (registry %s)\n' "$registry"
  code=$(curl -s -o "$tmp/keys.json" -w '%{http_code}' -m 20 "${registry%/}/-/npm/v1/keys" 2>/dev/null)
  # Provenance attestations are checked against Sigstore's trust root (TUF); npm retries it for
  # over a minute per lock file when it is unreachable, so ask it once first.
  tuf=https://tuf-repo-cdn.sigstore.dev/
  if [ "$code" != 200 ]; then
    echo "   the registry serves no signing keys (/-/npm/v1/keys answered ${code/000/nothing})"
    skip "npm signatures: the registry serves no signing keys (/-/npm/v1/keys: ${code/000/no answer})"
  elif ! curl -s -o /dev/null -m 20 "$tuf"; then
    echo "   Sigstore's trust root ($tuf) does not answer"
    skip "npm signatures: Sigstore's trust root ($tuf), needed for provenance attestations, does not answer"
  else
    for d in "${npm_dirs[@]}"; do
      t0=$SECONDS
      if [ ! -d "$d/node_modules" ]; then
        (cd "$d" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >/dev/null
      fi
      if (cd "$d" && timeout 300 npm audit signatures) >"$tmp/sig.out" 2>&1; then
        sed 's/^/   /' "$tmp/sig.out"
        ok "npm signatures, $d: $(grep -m1 -E 'verified' "$tmp/sig.out" || echo verified)"
      elif grep -q -E 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|E40[45]|E5[0-9][0-9]' "$tmp/sig.out"; then
        sed 's/^/   /' "$tmp/sig.out" | head -n 5
        skip "npm signatures, $d: a signature service did not answer ($(grep -m1 -o -E 'request to [^ ]+' "$tmp/sig.out" || echo see above))"
      else
        sed 's/^/   /' "$tmp/sig.out"
        fail "npm signatures, $d: invalid or missing signatures (see above)"
      fi
      echo "   ($((SECONDS - t0)) s)"
    done
  fi
fi

# --- Rust --------------------------------------------------------------------------------------
printf '\n-- cargo deny check advisories (RustSec database)\n'
t0=$SECONDS
if reach=$(timeout 20 git ls-remote "$RUSTSEC_URL" HEAD 2>&1); then
  if ! command -v cargo-deny >/dev/null; then
    fail "Rust advisories: the database answers but cargo-deny is not installed (cargo install --locked cargo-deny)"
  elif timeout 600 cargo deny check advisories; then
    ok "Rust advisories: none outside deny.toml's ignore list (RustSec database fetched now)"
  else
    fail "Rust advisories: cargo deny check advisories (see above)"
  fi
elif [ -n "${RUSTSEC_DB:-}" ]; then
  # A local checkout: give cargo-deny a copy under a db-path of its own, where it would have put
  # its clone of the default URL, and tell it not to fetch.
  echo "   $RUSTSEC_URL: $(echo "$reach" | tail -n 1)"
  when=$(git -C "$RUSTSEC_DB" log -1 --format=%cs 2>/dev/null)
  if [ -z "$when" ]; then
    fail "Rust advisories: RUSTSEC_DB=$RUSTSEC_DB is not a git checkout of the advisory database"
  elif ! command -v cargo-deny >/dev/null; then
    fail "Rust advisories: RUSTSEC_DB is set but cargo-deny is not installed (cargo install --locked cargo-deny)"
  else
    age=$((($(date +%s) - $(git -C "$RUSTSEC_DB" log -1 --format=%ct)) / 86400))
    sed -e '/^db-path *=/d' -e "/^\[advisories\]\$/a db-path = \"$tmp/dbs\"" deny.toml >"$tmp/deny.toml"
    # cargo-deny names the clone after the URL (e.g. advisory-db-3157b0e258782691); ask it.
    name=$(cargo deny --offline --config "$tmp/deny.toml" check advisories 2>&1 |
      grep -o -m1 "$tmp/dbs/[A-Za-z0-9_.-]*" | sed 's|.*/||')
    git clone -q --depth 1 "file://$(cd "$RUSTSEC_DB" && pwd)" "$tmp/dbs/${name:-advisory-db-3157b0e258782691}"
    echo "   using RUSTSEC_DB=$RUSTSEC_DB, last changed $when ($age days ago)"
    if cargo deny --offline --config "$tmp/deny.toml" check advisories; then
      ok "Rust advisories: none outside deny.toml's ignore list, against a copy of the database as of $when ($age days old); later advisories not checked"
    else
      fail "Rust advisories: cargo deny check advisories against the database as of $when (see above)"
    fi
  fi
else
  echo "   $RUSTSEC_URL: $(echo "$reach" | tail -n 1)"
  skip "Rust advisories: the RustSec database is unreachable from here ($(echo "$reach" | tail -n 1 | sed 's/^fatal: //'))"
fi
echo "   ($((SECONDS - t0)) s)"

# --- summary -----------------------------------------------------------------------------------
printf '\nSupply chain:\n'
printf '  %s\n' "${summary[@]}"
printf '  %s\n' "install scripts: off (websdk/page/build.sh runs npm ci --ignore-scripts)"
if [ "$failed" = 1 ]; then
  exit 1
elif [ "$unchecked" = 1 ] && [ "$strict" = 1 ]; then
  echo "--strict: a check could not run" >&2
  exit 1
fi
exit 0
