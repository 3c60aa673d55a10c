//! A small HTTP endpoint the connector tests control: it records every call (idempotency key,
//! body, time) and answers from a script per dossier code, then with a registration.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Call {
    pub idempotency_key: String,
    pub authorization: String,
    pub body: Value,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Statuses to answer, in turn, for a dossier code; then 201.
    script: HashMap<String, VecDeque<u16>>,
    /// Idempotency keys already answered with success: a repeat is answered the same and
    /// not counted as a new registration.
    registered: HashMap<String, Value>,
    /// How long each answer takes.
    delay: std::time::Duration,
}

#[derive(Clone, Default)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Serves on an ephemeral loopback port; returns the URL of its endpoint.
    pub async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/births", post(answer))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/births")
    }

    /// Answers the next calls about `dossier` with these statuses.
    pub fn script(&self, dossier: &str, statuses: &[u16]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .insert(dossier.to_owned(), statuses.iter().copied().collect());
    }

    /// Makes every answer take `delay`, so a burst is still being delivered when a test acts.
    pub fn slow(&self, delay: std::time::Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Successful registrations: one per idempotency key, however often it was called.
    pub fn registrations(&self) -> usize {
        self.inner.lock().unwrap().registered.len()
    }

    /// Waits until `done` holds for the calls, failing the test after the harness's wait.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Call]) -> bool) {
        self.wait_within(super::WAIT, what, done).await;
    }

    /// [`Self::wait_for`], failing after `within`.
    pub async fn wait_within(
        &self,
        within: std::time::Duration,
        what: &str,
        done: impl Fn(&[Call]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !done(&self.calls()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; calls: {:?}",
                self.calls()
                    .iter()
                    .map(|c| (c.body["dossier_code"].clone(), c.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = header("idempotency-key");
    let dossier = body["dossier_code"].as_str().unwrap_or_default().to_owned();
    let delay = receiver.inner.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut inner = receiver.inner.lock().unwrap();
    let status = inner
        .script
        .get_mut(&dossier)
        .and_then(VecDeque::pop_front)
        .unwrap_or(201);
    let number = inner.registered.len() + 1;
    let reply = if status == 201 {
        inner
            .registered
            .entry(key.clone())
            .or_insert_with(|| {
                json!({
                    "registration_number": format!("{number}/2026"),
                    "registration_book": "01/2026-KS",
                    "registered_at": "2026-11-20T10:02:11+07:00",
                    "agency_code": "G22.99.08",
                    "personal_id": format!("048326{number:06}"),
                    "e_extract_reference": format!("TLKS-48-2026-{number:06}"),
                })
            })
            .clone()
    } else {
        json!({"error": "scripted failure"})
    };
    inner.calls.push(Call {
        idempotency_key: key,
        authorization: header("authorization"),
        body,
        status,
        at: Instant::now(),
    });
    (StatusCode::from_u16(status).expect("status"), Json(reply))
}
