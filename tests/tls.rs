//! Transport security against the real hub: TLS on both listeners, and member systems identified
//! by their client certificates over mutual TLS.

mod common;

use common::pki::Pki;
use common::*;
use lienthong::access::{AccessError, Credentials};
use lienthong::domain::SystemId;
use tonic::Code;

fn system(id: &str) -> SystemId {
    SystemId::parse(id).expect("valid id")
}

#[tokio::test]
async fn a_registered_certificate_identifies_its_system_and_others_are_refused() {
    let env = TestEnv::new("mtls").await;
    let hub = env.start_hub().await;
    let credentials = Credentials::new(env.pool.clone());
    let token = env.member("registrar").await;
    env.member("other").await;
    let registered = Pki::get().client("registrar", false);
    let (credential, _) = credentials
        .add_certificate(&system("registrar"), registered.cert_pem.as_bytes())
        .await
        .expect("certificate registered");
    let (code, payload) = dossier();

    // The certificate alone names the system: no token needed.
    let channel = tls_channel(&hub, Some(&registered))
        .await
        .expect("mutual TLS");
    let mut by_certificate = client_on(channel.clone(), &hub, None).await;
    by_certificate
        .publish(publish_request(&code, &payload))
        .await
        .expect("published with the certificate alone");

    // A token of another system on the same connection is refused.
    let other_token = env.token("stranger").await;
    let mut mixed = client_on(channel.clone(), &hub, Some(&other_token)).await;
    let status = mixed
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("certificate and token disagree");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("different member systems"),
        "{}",
        status.message()
    );
    let mut both = client_on(channel, &hub, Some(&token)).await;
    both.publish(publish_request(&code, &payload))
        .await
        .expect("certificate and token of the same system");

    // A certificate signed by the CA but never registered identifies nobody.
    let unknown = Pki::get().client("unknown", false);
    let channel = tls_channel(&hub, Some(&unknown)).await.expect("handshake");
    let mut stranger = client_on(channel, &hub, None).await;
    let status = stranger
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("unknown certificate");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("unknown client certificate"),
        "{}",
        status.message()
    );

    // An expired certificate cannot be registered, and the TLS handshake refuses it.
    let expired = Pki::get().client("registrar", true);
    let refused = credentials
        .add_certificate(&system("registrar"), expired.cert_pem.as_bytes())
        .await;
    assert!(
        matches!(&refused, Err(AccessError::InvalidCertificate(why)) if why.contains("expired")),
        "{refused:?}"
    );
    let outcome = match tls_channel(&hub, Some(&expired)).await {
        Err(_) => Err(Code::Unavailable),
        Ok(channel) => client_on(channel, &hub, None)
            .await
            .publish(publish_request(&code, &payload))
            .await
            .map(|_| ())
            .map_err(|status| status.code()),
    };
    // Refused by the TLS handshake itself, not later by the hub's own checks.
    assert!(
        matches!(outcome, Err(Code::Unavailable | Code::Unknown)),
        "an expired certificate must fail the handshake: {outcome:?}"
    );

    // A registered certificate past its expiry in the hub's records is refused by the hub.
    env.pool
        .get()
        .await
        .expect("connection")
        .execute(
            "UPDATE system_credential SET expires_at = now() - interval '1 minute' WHERE id = $1",
            &[&credential],
        )
        .await
        .expect("expired in the records");
    hub.access_caught_up().await.expect("caught up");
    let channel = tls_channel(&hub, Some(&registered))
        .await
        .expect("handshake");
    let status = client_on(channel, &hub, None)
        .await
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("expired in the records");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
    env.pool
        .get()
        .await
        .expect("connection")
        .execute(
            "UPDATE system_credential SET expires_at = now() + interval '1 day' WHERE id = $1",
            &[&credential],
        )
        .await
        .expect("valid again");

    // Revoking the certificate's credential ends its use.
    credentials
        .revoke_credentials(&system("registrar"), Some(credential), "test operator")
        .await
        .expect("revoked");
    hub.access_caught_up().await.expect("caught up");
    let channel = tls_channel(&hub, Some(&registered))
        .await
        .expect("handshake");
    let status = client_on(channel, &hub, None)
        .await
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("revoked certificate");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("revoked"), "{}", status.message());
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_hub_that_requires_client_certificates_refuses_connections_without_one() {
    let mut env = TestEnv::new("mtlsonly").await;
    env.config.tls.require_client_cert = true;
    let hub = env.start_hub().await;
    let token = env.member("one-stop").await;
    let (code, payload) = dossier();
    let outcome = match tls_channel(&hub, None).await {
        Err(_) => Err(Code::Unavailable),
        Ok(channel) => client_on(channel, &hub, Some(&token))
            .await
            .publish(publish_request(&code, &payload))
            .await
            .map(|_| ())
            .map_err(|status| status.code()),
    };
    assert!(
        outcome.is_err(),
        "a connection without a certificate was served"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn http_is_served_over_tls_too() {
    let mut env = TestEnv::new("httptls").await;
    env.config.tls.http = None;
    let hub = env.start_hub().await;
    let ca = reqwest::Certificate::from_pem(Pki::get().ca_pem.as_bytes()).expect("ca");
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    let health = https
        .get(format!("https://{}/healthz", hub.http_addr))
        .send()
        .await
        .expect("https answers");
    assert!(health.status().is_success());
    let plain = reqwest::get(format!("http://{}/healthz", hub.http_addr)).await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP must not be served"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn postgresql_is_reached_over_verified_tls_when_configured() {
    let env = TestEnv::new("pgtls").await;
    // Debian's PostgreSQL serves TLS with its "snakeoil" certificate, issued to localhost.
    let snakeoil = std::path::PathBuf::from("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    let mut database = env.config.database.clone();
    // No sslmode in the URL: a configured CA alone must make TLS required.
    database.url = database.url.replace("@127.0.0.1:", "@localhost:");
    database.ca_file = Some(snakeoil);
    let pool = lienthong::db::pool(&database).expect("pool");
    let client = pool.get().await.expect("a TLS connection");
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("asked")
        .get(0);
    assert!(encrypted, "the connection is encrypted");

    // A server whose certificate the configured CA did not sign is refused.
    database.ca_file = Some(Pki::get().dir.join("ca.pem"));
    let untrusted = lienthong::db::pool(&database).expect("pool");
    assert!(
        untrusted.get().await.is_err(),
        "an unverified server was accepted"
    );
}
