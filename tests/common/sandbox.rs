//! The national systems' sandboxes for tests: started in-process on a loopback port, and the
//! repository's connector manifests pointed at them.

use std::collections::HashMap;

use lienthong::sandbox::Credentials;
use lienthong::sandbox::faults::{Faults, Outage};

use super::TestEnv;

pub const TOKEN: &str = "sandbox-test-token-0123456789";
pub const PAYGOV_SECRET: &str = "paygov-merchant-secret-0123456789";

/// A system failing 30 % of its calls with 503, the same calls every run under `seed`.
pub fn failing_a_third(seed: u64) -> Faults {
    Faults {
        error_rate: 0.3,
        error_status: 503,
        seed,
        ..Faults::default()
    }
}

/// `faults`, and down for the next hour: until the test brings the system back.
pub fn down(faults: Faults) -> Faults {
    let now = chrono::Utc::now();
    Faults {
        outages: vec![Outage {
            from: now - chrono::Duration::seconds(1),
            until: now + chrono::Duration::hours(1),
        }],
        ..faults
    }
}

/// Starts the sandboxes with `faults` and `credentials`; their base URL (`http://host:port`).
pub async fn start(
    env: &TestEnv,
    faults: HashMap<String, Faults>,
    credentials: Credentials,
) -> String {
    start_drawing(
        env,
        faults,
        credentials,
        lienthong::sandbox::IdDraws::new(None),
    )
    .await
}

/// The sandboxes drawing new personal ID numbers from `ids`.
pub async fn start_drawing(
    env: &TestEnv,
    faults: HashMap<String, Faults>,
    credentials: Credentials,
    ids: lienthong::sandbox::IdDraws,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    tokio::spawn(lienthong::sandbox::serve(
        env.pool.clone(),
        addr,
        credentials,
        faults,
        ids,
        std::future::pending(),
    ));
    let base = format!("http://{addr}");
    for _ in 0..100 {
        let probe = reqwest::Client::new()
            .get(format!("{base}/civil-status/v1/births/x"))
            .send()
            .await;
        if probe.is_ok() {
            return base;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the sandbox did not start");
}

/// The sandboxes with every system on [`TOKEN`] and PayGov on [`PAYGOV_SECRET`].
pub async fn start_shared(env: &TestEnv, faults: HashMap<String, Faults>) -> String {
    start(env, faults, Credentials::shared(TOKEN, PAYGOV_SECRET)).await
}

/// A repository manifest as it is, pointed at the sandbox listening at `base` (its URL's host
/// and port replaced), reading the sandbox token and the PayGov secret from files, with
/// `replace` applied to its text (a var's default, say).
pub fn install_manifest(env: &TestEnv, name: &str, base: &str, replace: &[(&str, &str)]) {
    let dir = &env.config.connectors.dir;
    std::fs::create_dir_all(dir).expect("connectors dir");
    let token_file = dir.join("sandbox.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let secret_file = dir.join("paygov.secret");
    std::fs::write(&secret_file, PAYGOV_SECRET).expect("secret file");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("connectors/{name}.toml")),
    )
    .expect("the repository's manifest");
    let mut manifest: String = text
        .lines()
        .filter(|line| !line.starts_with("url_env = "))
        .map(|line| {
            if line.starts_with("token_env = ") {
                format!("token_file = {:?}", token_file.display().to_string())
            } else if line == "secret_env = \"LIENTHONG_PAYGOV_SECRET\"" {
                format!("secret_file = {:?}", secret_file.display().to_string())
            } else {
                line.replace("http://127.0.0.1:8095", base)
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    for (from, to) in replace {
        assert!(
            manifest.contains(from),
            "{name}: nothing to replace: {from}"
        );
        manifest = manifest.replace(from, to);
    }
    assert!(manifest.contains(base), "the test could point the manifest");
    std::fs::write(dir.join(format!("{name}.toml")), manifest).expect("manifest");
}
