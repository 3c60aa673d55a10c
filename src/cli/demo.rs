//! `lienthong demo`: the end-to-end scenario, played against a running hub over gRPC exactly as
//! a province's one-stop system and the civil-status software would: the one-stop system
//! publishes a valid birth dossier and a broken one; the civil-status side subscribes, receives
//! the valid one with its envelope and acknowledges it; with `--fee`, the dossier asks for
//! copies of its extract, whose fee its procedure asks of PayGov and the citizen pays
//! (`demo_fee`); with `--death-of`, a relative reports a death (`demo_death`); with
//! `--supplement`, a dossier waits for a supplement the citizen provides (`demo_supplement`);
//! with `--couple`, the birth forms are filled in from the population database through the
//! hub, and the pre-fill scene shows it step by step (`demo_prefill`).
//! The hub's connectors and procedure engine take the dossiers to their results.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use rand::Rng as _;
use serde_json::Value;

use crate::api::convert::struct_to_json;
use crate::proto::{StartFrom, SubscribeRequest};

use super::demo_prefill::{Answers, Couple, fill_in};
use super::hub_client::{
    BIRTH_SUBMITTED as EVENT_TYPE, acknowledged_until, birth_submission, client, connect,
    read_json, received_on_time,
};
pub(super) const WAIT_FOR_DELIVERY: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The hub's gRPC endpoint.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "LIENTHONG_ENDPOINT"
    )]
    endpoint: String,
    /// Bearer token of the publishing one-stop system (see `lienthong systems add`).
    #[arg(long, env = "LIENTHONG_PUBLISHER_TOKEN", hide_env_values = true)]
    publisher_token: String,
    /// Bearer token of the subscribing civil-status system.
    #[arg(long, env = "LIENTHONG_SUBSCRIBER_TOKEN", hide_env_values = true)]
    subscriber_token: String,
    /// A valid birth dossier to start from.
    #[arg(
        long,
        default_value = "schemas/examples/birth.dossier-submitted/valid-full.json"
    )]
    example: PathBuf,
    /// The CA certificate (PEM) to trust for an https endpoint.
    #[arg(long, env = "LIENTHONG_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The civil-status system's client certificate (PEM), for mutual TLS.
    #[arg(long, requires = "subscriber_key")]
    subscriber_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "subscriber_cert")]
    subscriber_key: Option<PathBuf>,
    /// The dossier asks for copies of the extract, and the fee scene follows: the procedure asks
    /// the fee of PayGov and the citizen pays it. It needs the PayGov connectors, the sandbox
    /// and the one-stop system's right to follow payments (`deploy/local/demo.sh` sets them up).
    #[arg(long)]
    fee: bool,
    /// Then play the death scene: a relative reports the death of this citizen of the
    /// population sandbox (it needs the death connectors and the one-stop system's right to
    /// publish `death.dossier-submitted`).
    #[arg(long, value_name = "PERSONAL_ID", requires_all = ["population_url", "population_token_file"])]
    death_of: Option<String>,
    /// The population database's citizens endpoint, where the one-stop system fills the
    /// deceased in, e.g. http://127.0.0.1:8095/population/v1/citizens.
    #[arg(long)]
    population_url: Option<String>,
    /// A file holding the population database's bearer token.
    #[arg(long)]
    population_token_file: Option<PathBuf>,
    /// With `--death-of`: a file holding the token of an agency told of registered deaths (the
    /// commune's social-protection office, granted to subscribe
    /// `death.civil-registration-completed`). The death scene receives the registration as it
    /// and acknowledges it, so the dossier lists the agency as confirmed.
    #[arg(long, requires = "death_of")]
    told_token_file: Option<PathBuf>,
    /// Then play the supplement scene: a dossier waits for a supplement the citizen provides.
    /// The portal's dossiers endpoint, e.g. http://127.0.0.1:8095/portal/v1/dossiers, whose
    /// public timeline shows the wait (it needs the one-stop system's supplement rights).
    #[arg(long, value_name = "PORTAL_URL")]
    supplement: Option<String>,
    /// A couple of the population sandbox (the mother's and the father's ID numbers) whose
    /// baby a birth dossier registers, its form filled in from the population database through
    /// the hub (it needs the population-lookups connector and the one-stop system's lookup
    /// rights). Given again, for the next dossier: the first couple's fills the main dossier,
    /// the second's the supplement scene's, and a third plays the pre-fill scene step by step.
    /// A dossier without a couple is the example as it is.
    #[arg(long, value_names = ["MOTHER_ID", "FATHER_ID"], num_args = 2, action = clap::ArgAction::Append)]
    couple: Vec<String>,
}

/// `form` as dossier `code`, received `now` (for a child born a week before).
pub(super) fn prepare(form: &mut Value, code: &str, now: DateTime<FixedOffset>) {
    form["dossier_code"] = code.into();
    received_on_time(
        form,
        now.to_rfc3339_opts(SecondsFormat::Secs, false),
        now.date_naive(),
    );
}

/// A new dossier code of the demo's receiving agency, received `now`.
pub(super) fn dossier_code(now: DateTime<FixedOffset>) -> String {
    format!(
        "G22.99.08-{}-{:06}",
        now.format("%y%m%d"),
        rand::rng().random_range(0..1_000_000)
    )
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let ca = args.ca_file.as_ref();
    let identity = args
        .subscriber_cert
        .as_ref()
        .zip(args.subscriber_key.as_ref());
    let mut one_stop = client(
        connect(&args.endpoint, ca, None).await?,
        &args.publisher_token,
    )?;
    // The civil-status software connects with its client certificate as well as its token.
    let mut civil_status = client(
        connect(&args.endpoint, ca, identity).await?,
        &args.subscriber_token,
    )?;
    if identity.is_some() {
        println!(
            "== 0. Both systems connect over TLS; civil-status presents its client certificate"
        );
    }

    let couples: Vec<Couple> = args
        .couple
        .chunks_exact(2)
        .map(|c| (c[0].as_str(), c[1].as_str()))
        .collect();
    let mut answers = match couples.first() {
        Some(_) => Some(Answers::open(&mut one_stop).await?),
        None => None,
    };
    let mut dossier = read_json(&args.example)?;
    let now = Utc::now().with_timezone(&crate::domain::vietnam());
    let code = dossier_code(now);
    prepare(&mut dossier, &code, now);
    if args.fee {
        dossier["extract_copies"] = super::demo_fee::COPIES.into();
    }

    // The civil-status side subscribes first, so the rebalance overlaps the publishing.
    println!("== 1. The civil-status software subscribes to {EVENT_TYPE}");
    let mut deliveries = civil_status
        .subscribe(SubscribeRequest {
            event_type: EVENT_TYPE.into(),
            consumer_group: "demo-civil-status".into(),
            start_from: StartFrom::Earliest.into(),
            max_unacknowledged: 16,
            purpose: "civil-registration".into(),
            legal_basis: "Law on Civil Status 60/2014/QH13".into(),
        })
        .await?
        .into_inner();

    println!("\n== 2. The one-stop system publishes dossier {code}");
    if let (Some(answers), Some(&couple)) = (answers.as_mut(), couples.first()) {
        fill_in(&mut one_stop, answers, (&mut dossier, &code, now), couple).await?;
        println!(
            "   its form filled in from the population database (through the hub) and the health \
             facility's certificate: {}, born to {} and {}",
            dossier["child"]["full_name"].as_str().unwrap_or("?"),
            dossier["mother"]["full_name"].as_str().unwrap_or("?"),
            dossier["father"]["full_name"].as_str().unwrap_or("?"),
        );
    }
    let request = |payload: &Value| birth_submission(&code, payload);
    let accepted = one_stop.publish(request(&dossier)).await?.into_inner();
    println!(
        "   accepted: event {} on {} partition {} offset {} (schema {} v{}, id {})",
        accepted.event_id,
        accepted.topic,
        accepted.partition,
        accepted.offset,
        accepted.schema_subject,
        accepted.schema_version,
        accepted.schema_id
    );

    println!(
        "\n== 3. It publishes a broken copy: an 11-digit ID, no sex, a 13th month, and a mother whose \
         ID number says she was born in another year"
    );
    let mut broken = dossier.clone();
    broken["declarant"]["personal_id"] = Value::String("04909300432".into());
    let other_year = dossier["mother"]["birth_date"]
        .as_str()
        .and_then(|date| date.get(..4)?.parse::<i32>().ok())
        .map_or(1996, |year| year + 1);
    broken["mother"]["birth_date"] = Value::String(format!("{other_year}-03-08"));
    broken["child"]["birth_date"] = Value::String("2026-13-01".into());
    if let Some(child) = broken["child"].as_object_mut() {
        child.remove("sex");
    }
    match one_stop.publish(request(&broken)).await {
        Ok(_) => bail!("the hub accepted a broken dossier"),
        Err(status) => {
            println!("   refused with {:?}:", status.code());
            for part in status.message().split("; ") {
                println!("     {part}");
            }
        }
    }

    println!(
        "\n== 4. The civil-status software tries to publish a birth dossier itself: it holds only \
         a right to subscribe"
    );
    match civil_status.publish(request(&dossier)).await {
        Ok(_) => bail!("the hub let a system publish without a right"),
        Err(status) => println!("   refused with {:?}: {}", status.code(), status.message()),
    }

    println!("\n== 5. The civil-status software receives the valid dossier and acknowledges it");
    let (delivery, earlier) = acknowledged_until(
        &mut civil_status,
        &mut deliveries,
        (WAIT_FOR_DELIVERY, "no delivery within 60 s"),
        |delivery| {
            delivery
                .envelope
                .as_ref()
                .is_some_and(|e| e.event_id == accepted.event_id)
        },
    )
    .await?;
    if earlier > 0 {
        println!(
            "   (acknowledged {earlier} earlier dossiers first: earlier runs' and load scenes')"
        );
    }
    let envelope = delivery.envelope.clone().unwrap_or_default();
    let payload = delivery.payload.map(struct_to_json).unwrap_or_default();
    println!(
        "   event      {} ({})",
        envelope.event_id, envelope.event_type
    );
    println!(
        "   from       {} at {}",
        envelope.producer_system, envelope.recorded_at
    );
    println!("   dossier    {}", envelope.correlation_id);
    println!(
        "   purpose    {} under {}",
        envelope.purpose, envelope.legal_basis
    );
    println!(
        "   schema     {} v{}",
        envelope.schema_subject, envelope.schema_version
    );
    println!("   trace      {}", envelope.traceparent);
    println!(
        "   child      {} born {}",
        payload["child"]["full_name"].as_str().unwrap_or("?"),
        payload["child"]["birth_date"].as_str().unwrap_or("?")
    );
    println!(
        "   acknowledged: offset {} committed for the group",
        delivery.offset
    );
    if args.fee {
        super::demo_fee::run(&mut one_stop, &code).await?;
    }
    if let (Some(deceased), Some(url), Some(token_file)) = (
        &args.death_of,
        &args.population_url,
        &args.population_token_file,
    ) {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("reading {}", token_file.display()))?;
        let population = super::demo_death::Population {
            url: url.clone(),
            token: token.trim().to_owned(),
        };
        let mut agency = match &args.told_token_file {
            Some(file) => {
                let token = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                Some(client(
                    connect(&args.endpoint, ca, None).await?,
                    token.trim(),
                )?)
            }
            None => None,
        };
        super::demo_death::run(&mut one_stop, &population, deceased, agency.as_mut()).await?;
    }
    if let Some(portal) = &args.supplement {
        let filler = answers.as_mut().zip(couples.get(1).copied());
        super::demo_supplement::run(&mut one_stop, portal, filler).await?;
    }
    if let (Some(answers), Some(&couple)) = (answers.as_mut(), couples.get(2)) {
        let example = args.example.to_string_lossy();
        super::demo_prefill::run(&mut one_stop, answers, &example, couple).await?;
    }
    println!("\nDone: one dossier published and delivered, one refused and kept in quarantine");
    println!("(see it with `lienthong quarantine list`), one publish denied for lack of a right");
    println!("(see it with `lienthong systems denials`).");
    if args.fee {
        println!(
            "The dossier's fee was asked of PayGov by its procedure, paid, and confirmed once."
        );
    }
    Ok(())
}
