#!/usr/bin/env bash
# The README's main command: installs and starts what is missing (broker, PostgreSQL role and
# database), builds and starts the sandboxes and the hub, registers the member systems and their
# rights, plays the scenario of `lienthong demo` (a birth dossier, a fee, a death dossier) and
# shows each procedure's outcome. Safe to run again and again. `--dossiers N` adds a last scene:
# N more birth dossiers through the same hub, connectors and sandboxes, with the throughput and
# the latency from submission to result. `--release` builds and runs the optimised binary (a
# longer build), for a pace that says something about production.
set -euo pipefail
load=0
profile=debug
while (( $# )); do
  case $1 in
    --dossiers) load=${2:?--dossiers needs a number}; shift 2 ;;
    --release) profile=release; shift ;;
    *) echo "usage: $0 [--dossiers N] [--release]" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/env.sh"
cd "$LIENTHONG_ROOT"

"$LIENTHONG_ROOT/deploy/local/start-postgres.sh"
"$LIENTHONG_ROOT/deploy/local/start-broker.sh"
log "building the hub ($profile)"
if [[ $profile == release ]]; then
  cargo build --locked --quiet --release
else
  cargo build --locked --quiet
fi
bin=$LIENTHONG_ROOT/target/$profile/lienthong
# Waits (up to 30 s) for the procedure of dossier $1 to complete and prints it; stops the demo
# if it does not.
show_completed() {
  for _ in $(seq 1 150); do
    "$bin" dossiers show "$1" --output json 2>/dev/null | grep '"state": "completed"' >/dev/null && break
    sleep 0.2
  done
  echo "-- lienthong dossiers show $1"
  "$bin" dossiers show "$1"
  "$bin" dossiers show "$1" --output json | grep '"state": "completed"' >/dev/null \
    || { echo "the procedure of $1 did not complete; see $LIENTHONG_DATA_DIR/hub.log" >&2; exit 1; }
}
export LIENTHONG_CONFIG=$LIENTHONG_ROOT/deploy/local/lienthong.toml
export LIENTHONG_DATABASE__URL=${LIENTHONG_DATABASE__URL:-postgres://$LIENTHONG_DB_USER@$PGHOST:$PGPORT/$LIENTHONG_DB_NAME}
export LIENTHONG_KAFKA__BOOTSTRAP_SERVERS=${LIENTHONG_KAFKA__BOOTSTRAP_SERVERS:-$KAFKA_HOST:$KAFKA_PORT}
grpc=${LIENTHONG_GRPC__LISTEN:-127.0.0.1:50051}
http=${LIENTHONG_HTTP__LISTEN:-127.0.0.1:8481}

# TLS on both listeners and mutual TLS for gRPC, from a throw-away CA made for this laptop, and
# the key that seals refused events at rest.
"$LIENTHONG_ROOT/deploy/local/make-secrets.sh" demo-civil-status
tls=$LIENTHONG_DATA_DIR/tls
export LIENTHONG_TLS__CERT_FILE=$tls/server.pem LIENTHONG_TLS__KEY_FILE=$tls/server.key
export LIENTHONG_TLS__CLIENT_CA_FILE=$tls/ca.pem
export LIENTHONG_QUARANTINE__KEY_FILE=$tls/quarantine.key
export LIENTHONG_AUDIT__SIGNING_KEY_FILE=$tls/audit-signing.key
export LIENTHONG_AUDIT__SUBJECT_KEY_FILE=$tls/audit-subject.key

# A token per member system: created on the first run; on later runs the old tokens are revoked
# and a fresh one issued (the token is shown only once).
token_for() {
  "$bin" systems add "$1" --name "$2" 2>/dev/null && return
  "$bin" systems revoke-credential "$1" --all-tokens --by demo-operator 2>/dev/null
  "$bin" systems token "$1" 2>/dev/null
}
publisher=$(token_for demo-onestop "Demo province one-stop system")
subscriber=$(token_for demo-civil-status "Demo civil-status software")
# Default deny: each system gets exactly the rights the scenario needs, granted on behalf of the
# one-stop system that owns the dossier data (repeating a grant changes nothing).
export LIENTHONG_OPERATOR=${LIENTHONG_OPERATOR:-demo-operator}
"$bin" systems grant demo-onestop --publish --event-type birth.dossier-submitted \
  --purpose civil-registration --owner demo-onestop --note "demo: the one-stop system submits birth dossiers"
"$bin" systems grant demo-civil-status --subscribe --event-type birth.dossier-submitted \
  --purpose civil-registration --owner demo-onestop --note "demo: civil-status registers the births"
# The civil-status connector (connectors/civil-status.toml) runs inside the hub as its own member
# system: it reads submitted dossiers and publishes the registration (or the failure).
"$bin" systems add civil-status-connector --name "Civil-status connector" >/dev/null 2>&1 || true
"$bin" systems grant civil-status-connector --subscribe --event-type birth.dossier-submitted \
  --purpose civil-registration --owner demo-onestop --note "demo: the connector registers births"
for type in birth.civil-registration-completed birth.step-failed; do
  "$bin" systems grant civil-status-connector --publish --event-type "$type" \
    --purpose civil-registration --owner demo-onestop --note "demo: the connector reports the registration"
done
# It registers deaths too (connectors/civil-status-deaths.toml).
"$bin" systems grant civil-status-connector --subscribe --event-type death.dossier-submitted \
  --purpose civil-registration --owner demo-onestop --note "demo: the connector registers deaths"
for type in death.civil-registration-completed death.step-failed; do
  "$bin" systems grant civil-status-connector --publish --event-type "$type" \
    --purpose civil-registration --owner demo-onestop --note "demo: the connector reports the registration"
done
# The social-insurance connector (connectors/social-insurance-cards.toml) issues the child's
# health-insurance card (group TE) when the procedure engine asks for it: once the birth is
# registered, and only if the dossier asked for the card.
"$bin" systems add social-insurance-connector --name "Social-insurance connector" >/dev/null 2>&1 || true
"$bin" systems grant social-insurance-connector --subscribe --event-type birth.health-insurance-card-requested \
  --purpose health-insurance --owner demo-onestop --note "demo: social insurance issues the child's card"
for type in birth.health-insurance-card-issued birth.step-failed; do
  "$bin" systems grant social-insurance-connector --publish --event-type "$type" \
    --purpose health-insurance --owner demo-onestop --note "demo: the connector reports the card"
done
# The population connector (connectors/population-deaths.toml) records registered deaths in the
# population database when the procedure engine asks.
"$bin" systems add population-connector --name "Population-database connector" >/dev/null 2>&1 || true
"$bin" systems grant population-connector --subscribe --event-type death.population-status-update-requested \
  --purpose identity-management --owner demo-onestop --note "demo: deaths recorded in the population database"
"$bin" systems grant population-connector --publish --event-type death.population-status-updated \
  --purpose identity-management --owner demo-onestop --note "demo: the connector reports the update"
# The other connectors of connectors/ run, ready, with their own member systems and rights:
# PayGov (transactions, callbacks, confirmations by query), residence deletions on death, and
# the national portal (dossiers and their progress).
grant() { # system direction event-type purpose
  "$bin" systems grant "$1" "--$2" --event-type "$3" --purpose "$4" --owner demo-onestop \
    --note "demo: $1 as its manifest says"
}
"$bin" systems add paygov-connector --name "PayGov connector" >/dev/null 2>&1 || true
grant paygov-connector publish payment.callback-received fee-payment
grant paygov-connector subscribe payment.requested fee-payment
grant paygov-connector publish payment.initiated fee-payment
grant paygov-connector subscribe payment.initiated fee-payment
grant paygov-connector publish payment.confirmed fee-payment
grant paygov-connector publish payment.failed fee-payment
grant paygov-connector subscribe payment.confirmed fee-payment
grant paygov-connector publish payment.reconciled fee-payment
"$bin" systems add residence-connector --name "Residence connector" >/dev/null 2>&1 || true
grant residence-connector subscribe death.residence-deletion-requested residence-registration
grant residence-connector subscribe birth.residence-registration-requested residence-registration
grant residence-connector publish birth.residence-registered residence-registration
grant residence-connector publish birth.step-failed residence-registration
grant residence-connector subscribe death.residence-deletion-revert-requested residence-registration
grant residence-connector publish death.residence-deletion-reverted residence-registration
grant residence-connector publish death.residence-deleted residence-registration
grant residence-connector publish death.step-failed residence-registration
grant population-connector publish death.step-failed identity-management
grant population-connector subscribe death.population-status-revert-requested identity-management
grant population-connector publish death.population-status-reverted identity-management
# The pre-fill (population-lookups): the one-stop system asks the population database about the
# people a birth form names, through the hub, and the connector answers; the demo's one-stop
# system also plays the health facility's software, which publishes the birth certificate.
grant population-connector subscribe birth.citizen-lookup-requested identity-management
grant population-connector publish birth.citizen-found identity-management
grant population-connector publish birth.citizen-lookup-failed identity-management
grant demo-onestop publish birth.citizen-lookup-requested dossier-processing
grant demo-onestop subscribe birth.citizen-found dossier-processing
grant demo-onestop subscribe birth.citizen-lookup-failed dossier-processing
grant demo-onestop publish birth.e-birth-certificate-issued civil-registration
# The civil-status officer's verification of a late birth without its certificate
# (civil-status-verifications).
grant civil-status-connector publish birth.verification-recorded civil-registration
# The identity authority issues the child's ID card when the dossier asks for one (id-cards).
grant population-connector subscribe birth.id-card-requested identity-management
grant population-connector publish birth.id-card-issued identity-management
grant population-connector publish birth.step-failed identity-management
# Social insurance decides the funeral allowance and survivor lump sum the engine asks for, or
# refuses them with the reason, pays those decided and cancels an unpaid one whose death
# registration is annulled (social-insurance-benefits, -benefit-payments, -benefit-cancellations).
grant social-insurance-connector subscribe death.benefit-decision-requested social-insurance-benefit
grant social-insurance-connector subscribe death.benefit-payment-requested social-insurance-benefit
grant social-insurance-connector subscribe death.benefit-decision-cancel-requested social-insurance-benefit
for type in death.benefit-decided death.benefit-refused death.benefit-paid \
    death.benefit-decision-cancelled death.step-failed; do
  grant social-insurance-connector publish "$type" social-insurance-benefit
done
# The one-stop system follows the fee its dossier's procedure asks for (the demo's fee scene)
# and submits the death and supplement scenes' dossiers.
grant demo-onestop publish death.dossier-submitted civil-registration
grant demo-onestop publish birth.supplement-requested civil-registration
grant demo-onestop publish birth.supplement-provided civil-registration
# Tell Us Once: the commune's social-protection office is one of the agencies told of every
# registered death (funeral support, Decree 20/2021); the death scene receives the registration
# as it and acknowledges it, and the dossier lists who confirmed.
told_token=$LIENTHONG_DATA_DIR/social-protection.token
told=$(token_for demo-social-protection "Demo commune social-protection office")
(umask 077; printf '%s\n' "$told" >"$told_token")
grant demo-social-protection subscribe death.civil-registration-completed social-protection
grant demo-onestop subscribe payment.initiated fee-payment
grant demo-onestop subscribe payment.confirmed fee-payment
"$bin" systems add portal-connector --name "National portal connector" >/dev/null 2>&1 || true
grant portal-connector subscribe birth.dossier-submitted dossier-tracking
grant portal-connector subscribe death.dossier-submitted dossier-tracking
grant portal-connector subscribe dossier.status-changed dossier-tracking
# The procedure engine (src/procedures) runs inside the hub as its own member system: it takes
# each dossier in, follows its steps against their working-day deadlines, mirrors its status to
# the portal and returns the result. `lienthong dossiers rights` lists what it needs.
"$bin" systems add procedure-engine --name "Procedure engine" >/dev/null 2>&1 || true
"$bin" dossiers rights | while read -r direction type purpose; do
  grant procedure-engine "$direction" "$type" "$purpose"
done
# The national systems' stand-ins (sandboxes), with a token of their own that the connectors
# read from the environment.
sandbox_token=$LIENTHONG_DATA_DIR/sandbox.token
[[ -s $sandbox_token ]] || (umask 077; openssl rand -hex 24 >"$sandbox_token")
sandbox=${LIENTHONG_SANDBOX_LISTEN:-127.0.0.1:8095}
export LIENTHONG_CIVIL_STATUS_URL=http://$sandbox/civil-status/v1/births
export LIENTHONG_CIVIL_STATUS_DEATHS_URL=http://$sandbox/civil-status/v1/deaths
export LIENTHONG_CIVIL_STATUS_VERIFICATIONS_URL=http://$sandbox/civil-status/v1/verifications
LIENTHONG_CIVIL_STATUS_TOKEN=$(cat "$sandbox_token")
export LIENTHONG_CIVIL_STATUS_TOKEN
export LIENTHONG_SOCIAL_INSURANCE_URL=http://$sandbox/social-insurance/v1/child-cards
export LIENTHONG_SOCIAL_INSURANCE_BENEFITS_URL=http://$sandbox/social-insurance/v1/death-benefits
export LIENTHONG_SOCIAL_INSURANCE_TOKEN=$LIENTHONG_CIVIL_STATUS_TOKEN
export LIENTHONG_POPULATION_URL=http://$sandbox/population/v1/citizens
export LIENTHONG_POPULATION_TOKEN=$LIENTHONG_CIVIL_STATUS_TOKEN
export LIENTHONG_RESIDENCE_URL=http://$sandbox/residence/v1/permanent
export LIENTHONG_RESIDENCE_BIRTHS_URL=http://$sandbox/residence/v1/registrations
export LIENTHONG_RESIDENCE_TOKEN=$LIENTHONG_CIVIL_STATUS_TOKEN
export LIENTHONG_PORTAL_URL=http://$sandbox/portal/v1/dossiers
export LIENTHONG_PORTAL_TOKEN=$LIENTHONG_CIVIL_STATUS_TOKEN
export LIENTHONG_PAYGOV_URL=http://$sandbox/paygov/v1/transactions
export LIENTHONG_PAYGOV_RECONCILIATION_URL=http://$sandbox/paygov/v1/reconciliation
export LIENTHONG_PAYGOV_TOKEN=$LIENTHONG_CIVIL_STATUS_TOKEN
export LIENTHONG_PAYGOV_CALLBACK_URL=https://$http/connectors/paygov-callbacks/webhook
# PayGov checks the hub's transactions and signs its payment notifications with a merchant
# secret agreed with the province.
paygov_secret=$LIENTHONG_DATA_DIR/paygov.secret
[[ -s $paygov_secret ]] || (umask 077; openssl rand -hex 32 >"$paygov_secret")
LIENTHONG_PAYGOV_SECRET=$(cat "$paygov_secret")
export LIENTHONG_PAYGOV_SECRET
# The civil-status software is also identified by its client certificate (registered once).
# (grep reads everything: `grep -q` would close the pipe early on the CLI)
if ! "$bin" systems credentials demo-civil-status | grep certificate >/dev/null; then
  "$bin" systems cert demo-civil-status --file "$tls/demo-civil-status.pem"
fi

"$LIENTHONG_ROOT/deploy/local/stop-hub.sh"
mkdir -p "$LIENTHONG_DATA_DIR"
log "starting the national systems' sandboxes on $sandbox (log in $LIENTHONG_DATA_DIR/sandbox.log)"
# PayGov's sandbox calls the hub back over TLS: it trusts the demo's certificate authority.
SSL_CERT_FILE=$tls/ca.pem "$bin" sandbox serve --listen "$sandbox" --token-file "$sandbox_token" \
  --paygov-secret-file "$paygov_secret" >"$LIENTHONG_DATA_DIR/sandbox.log" 2>&1 &
echo $! >"$LIENTHONG_DATA_DIR/sandbox.pid"
for _ in $(seq 1 100); do
  curl -fs "http://$sandbox/openapi/population.json" >/dev/null && break
  kill -0 "$(cat "$LIENTHONG_DATA_DIR/sandbox.pid")" 2>/dev/null || { tail -n 20 "$LIENTHONG_DATA_DIR/sandbox.log" >&2; exit 1; }
  sleep 0.1
done
log "starting the hub (gRPC $grpc, HTTP $http; log in $LIENTHONG_DATA_DIR/hub.log)"
"$bin" serve >"$LIENTHONG_DATA_DIR/hub.log" 2>&1 &
echo $! >"$LIENTHONG_DATA_DIR/hub.pid"
trap '"$LIENTHONG_ROOT/deploy/local/stop-hub.sh"' EXIT
for _ in $(seq 1 150); do
  curl -fs --cacert "$tls/ca.pem" "https://$http/readyz" >/dev/null && break
  kill -0 "$(cat "$LIENTHONG_DATA_DIR/hub.pid")" 2>/dev/null || { tail -n 30 "$LIENTHONG_DATA_DIR/hub.log" >&2; exit 1; }
  sleep 0.2
done

# The population database's stand-in holds a small synthetic population of Da Nang (seeded on
# the first run); the death scene picks a living citizen with a household from it, one that
# social insurance holds contributions for where there is one.
db=$LIENTHONG_DATABASE__URL
living="SELECT count(*) FROM sandbox_population.citizen WHERE deceased_at IS NULL"
if (( $(psql "$db" -Atc "$living" 2>/dev/null || echo 0) < 20 )); then
  "$bin" sandbox seed --citizens 200 --province 48 --seed "$RANDOM"
fi
deceased=$(psql "$db" -Atc "SELECT personal_id FROM sandbox_population.citizen p
    LEFT JOIN sandbox_social_insurance.contribution c USING (personal_id)
  WHERE deceased_at IS NULL AND relationship <> 'head' AND household_id IS NOT NULL
    AND commune_code IS NOT NULL AND address IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM sandbox_social_insurance.benefit_decision d
                    WHERE d.deceased_personal_id = p.personal_id)
  ORDER BY (coalesce(c.months_before_2014 + c.months_from_2014, 0) < 12), random() LIMIT 1")
# The birth dossiers' parents, one couple each (the main dossier, the supplement scene's, the
# pre-fill scene's): a living woman of 18 to 45 and a man heading one household together, both
# with a whole date of birth. The one-stop system fills each form in from the population
# database through the hub.
couples=$(psql "$db" -Atc "SELECT '--couple ' || m.personal_id || ' ' || f.personal_id
  FROM sandbox_population.citizen m JOIN sandbox_population.citizen f
    ON f.household_id = m.household_id AND f.sex = 'MALE' AND f.relationship IN ('head', 'spouse')
   AND length(f.birth_date) = 10 AND f.deceased_at IS NULL
  WHERE m.sex = 'FEMALE' AND m.relationship IN ('head', 'spouse') AND m.deceased_at IS NULL
    AND length(m.birth_date) = 10 AND m.commune_code IS NOT NULL AND m.address IS NOT NULL
    AND m.birth_date::date BETWEEN current_date - interval '45 years' AND current_date - interval '18 years'
    AND m.personal_id <> '$deceased' AND f.personal_id <> '$deceased'
  ORDER BY random() LIMIT 3")

echo
demo_out=$LIENTHONG_DATA_DIR/demo.out
"$bin" demo --endpoint "https://$grpc" --ca-file "$tls/ca.pem" \
  --publisher-token "$publisher" --subscriber-token "$subscriber" \
  --subscriber-cert "$tls/demo-civil-status.pem" --subscriber-key "$tls/demo-civil-status.key" \
  --example schemas/examples/birth.dossier-submitted/valid-full.json \
  --fee --death-of "$deceased" --population-url "http://$sandbox/population/v1/citizens" \
  --population-token-file "$sandbox_token" --told-token-file "$told_token" \
  --supplement "http://$sandbox/portal/v1/dossiers" $couples \
  | tee "$demo_out"
code=$(sed -n 's/^== 2. The one-stop system publishes dossier //p' "$demo_out")
death_code=$(sed -n 's/^   death.dossier-submitted .*: dossier //p' "$demo_out")
supplement_code=$(sed -n 's/^   supplement dossier \([^:]*\):.*/\1/p' "$demo_out")
prefill_code=$(sed -n 's/^   prefill dossier \([^:]*\):.*/\1/p' "$demo_out")
echo
echo "== 10. The civil-status connector delivers dossier $code to the civil-status system"
rm -f "$LIENTHONG_DATA_DIR/registration.json" "$LIENTHONG_DATA_DIR/card.json"
for _ in $(seq 1 150); do
  curl -fs -H "Authorization: Bearer $LIENTHONG_CIVIL_STATUS_TOKEN" "http://$sandbox/civil-status/v1/births/$code" >"$LIENTHONG_DATA_DIR/registration.json" && break
  sleep 0.2
done
echo "-- the civil-status system's record (GET /civil-status/v1/births/$code on the sandbox)"
[[ -s $LIENTHONG_DATA_DIR/registration.json ]] || { echo "not delivered; see $LIENTHONG_DATA_DIR/hub.log and sandbox.log" >&2; exit 1; }
cat "$LIENTHONG_DATA_DIR/registration.json"
echo
child=$(sed -n 's/.*"personal_id":"\([0-9]*\)".*/\1/p' "$LIENTHONG_DATA_DIR/registration.json")
echo
echo "== 11. The engine asks for the card and the residence; social insurance issues the card (TE)"
for _ in $(seq 1 150); do
  curl -fs -H "Authorization: Bearer $LIENTHONG_SOCIAL_INSURANCE_TOKEN" "http://$sandbox/social-insurance/v1/child-cards/$child" >"$LIENTHONG_DATA_DIR/card.json" && break
  sleep 0.2
done
echo "-- social insurance's record (GET /social-insurance/v1/child-cards/$child on the sandbox)"
[[ -s $LIENTHONG_DATA_DIR/card.json ]] || { echo "no card; see $LIENTHONG_DATA_DIR/hub.log and sandbox.log" >&2; exit 1; }
cat "$LIENTHONG_DATA_DIR/card.json"
echo
echo "-- and the residence database's (GET /residence/v1/permanent/$child): the child joined the"
echo "   father's household (residence-births, asked by the engine with the registered child)"
for _ in $(seq 1 150); do
  curl -fs -H "Authorization: Bearer $LIENTHONG_RESIDENCE_TOKEN" "http://$sandbox/residence/v1/permanent/$child" \
    >"$LIENTHONG_DATA_DIR/residence.json" && break
  sleep 0.2
done
[[ -s $LIENTHONG_DATA_DIR/residence.json ]] || { echo "no residence; see $LIENTHONG_DATA_DIR/hub.log and sandbox.log" >&2; exit 1; }
cat "$LIENTHONG_DATA_DIR/residence.json"
echo
echo
echo "== 12. The procedure engine sees the dossier through: accepted with an appointment in working"
echo "   days, registration, then the card and the residence, then the result returned to the citizen"
show_completed "$code"
echo
echo "== 13. The citizen follows the dossier on the national portal (synced by portal-dossiers,"
echo "   each status set by the engine): 1 new, 2 accepted, 4 processing, 9 processed, 10 returned"
rm -f "$LIENTHONG_DATA_DIR/portal.json"
for _ in $(seq 1 150); do
  curl -fs "http://$sandbox/portal/v1/dossiers/$code" >"$LIENTHONG_DATA_DIR/portal.json" \
    && grep -q '"status":10' "$LIENTHONG_DATA_DIR/portal.json" && break
  sleep 0.2
done
echo "-- the portal's public timeline (GET /portal/v1/dossiers/$code, no token)"
[[ -s $LIENTHONG_DATA_DIR/portal.json ]] || { echo "not synced; see $LIENTHONG_DATA_DIR/hub.log" >&2; exit 1; }
cat "$LIENTHONG_DATA_DIR/portal.json"
echo
# Status reports are written every second; give the first one a moment.
sleep 2
echo "== 14. The death dossier $death_code: registered, the population database and the residence"
echo "   database told (each once), each benefit decided from the contributions social insurance"
echo "   holds and paid into the relative's account (or refused, with the reason), and the death"
echo "   extract and the decisions returned; every agency entitled to the registration told once,"
echo "   with its acknowledgement (TOLD ONCE)"
show_completed "$death_code"
echo "-- the population and residence databases' records (GET on the sandboxes)"
curl -fs -H "Authorization: Bearer $LIENTHONG_POPULATION_TOKEN" -H "X-Caller: demo-operator" \
  -H "X-Purpose: civil-registration" "http://$sandbox/population/v1/citizens/$deceased" \
  | sed 's/.*\("deceased_at":[^,}]*\).*/population: \1/'
echo
curl -fs -H "Authorization: Bearer $LIENTHONG_RESIDENCE_TOKEN" "http://$sandbox/residence/v1/permanent/$deceased" \
  | sed 's/.*\("deleted_at":[^,}]*\).*/residence:  \1/'
echo
echo "-- social insurance's decisions for the deceased (the sandbox's own table)"
psql "$db" -c "SELECT 'QD-BHXH-' || lpad(decision_id::text, 8, '0') AS decision, benefit_type,
    status, amount_vnd, reason_code, payment_reference
  FROM sandbox_social_insurance.benefit_decision WHERE deceased_personal_id = '$deceased'
  ORDER BY decision_id"
echo
echo "== 15. The supplement dossier $supplement_code: it waited at status 5 for the copy of the"
echo "   parents' marriage certificate, then went on to its result"
show_completed "$supplement_code"
for _ in $(seq 1 150); do
  curl -fs "http://$sandbox/portal/v1/dossiers/$supplement_code" >"$LIENTHONG_DATA_DIR/portal.json" \
    && grep -q '"status":10' "$LIENTHONG_DATA_DIR/portal.json" && break
  sleep 0.2
done
echo "-- the portal's timeline for it: $(sed 's/.*"timeline"//' "$LIENTHONG_DATA_DIR/portal.json" \
  | grep -o '"status":[0-9]*' | cut -d: -f2 | paste -sd' ')"
echo
if [[ -n $prefill_code ]]; then
  echo "== 15b. The pre-filled dossier $prefill_code: the hub counted which of the form's fields"
  echo "   hold what the population database and the health facility told through it (pre-filled)"
  show_completed "$prefill_code"
  echo
fi
echo "-- lienthong connectors list"
"$bin" connectors list
echo "-- lienthong connectors status civil-status"
"$bin" connectors status civil-status
echo
echo "== 16. What an operator sees"
echo "-- GET https://$http/metrics (excerpt)"
curl -fs --cacert "$tls/ca.pem" "https://$http/metrics" | grep -E '^lienthong_(events_published|events_rejected|events_delivered|access_denied|procedure_steps)_total' || true
echo "-- lienthong dossiers list --limit 5 (and --overdue for those past a due time)"
"$bin" dossiers list --limit 5
echo "-- lienthong quarantine list --limit 1"
"$bin" quarantine list --limit 1
echo "-- lienthong quarantine show <id> (the sealed request, opened; the read is recorded)"
"$bin" quarantine show "$("$bin" quarantine list --limit 1 | sed -n 's/^#\([0-9]*\) .*/\1/p')" | sed -n '1,8p'
echo "-- lienthong systems rights demo-civil-status"
"$bin" systems rights demo-civil-status
echo "-- lienthong systems list"
"$bin" systems list
echo "-- lienthong systems denials --limit 1"
"$bin" systems denials --limit 1
echo
echo "== 17. What an auditor sees: the birth dossier's transfers (who received which fields, why,"
echo "   under which schema version), one of them proven and the proof checked offline with the"
echo "   published key, and the whole log verified against its signed checkpoints"
echo "-- lienthong audit trace $code"
"$bin" audit trace "$code" --by demo-auditor
echo "-- lienthong audit lineage $code (what data catalogues are sent as OpenLineage run events on"
echo "   the lienthong.openlineage topic: the dossier's run, a run per step, each connector's call)"
"$bin" audit lineage "$code" --by demo-auditor \
  | awk 'NR == 1 || /procedure\.|connector\.civil-status|run event/'
echo "-- lienthong audit checkpoint (the hub signs one every 10 s; this signs one now)"
"$bin" audit checkpoint
# The civil-status connector's call with the dossier: its entry's position in the log. (awk
# reads to the end, so the trace is not cut short.)
position=$("$bin" audit trace "$code" --by demo-auditor \
  | awk '$4 == "connector-call" && $6 == "civil-status" && !found { print $1; found = 1 }')
"$bin" audit prove "$position" --out "$LIENTHONG_DATA_DIR/proof.json"
key=$("$bin" audit key)
echo "-- lienthong audit check-proof proof.json --key $key"
echo "   (offline: only the proof and the published key, no database)"
"$bin" audit check-proof "$LIENTHONG_DATA_DIR/proof.json" --key "$key"
echo "-- lienthong audit verify"
"$bin" audit verify
echo "-- lienthong citizen report <the child's personal ID> (what the family can be shown)"
"$bin" citizen report "$child" --by demo-portal | sed -n '1,24p'
if (( load > 0 )); then
  echo
  echo "== 18. Under load: $load more birth dossiers through the same hub, connectors and sandboxes"
  echo "   (a $profile build, every national system a sandbox on this machine)"
  "$bin" dossiers load --count "$load" --endpoint "https://$grpc" --ca-file "$tls/ca.pem" \
    --publisher-token "$publisher"
fi
